"""`python -m services.gateway`: runs the public gateway until SIGTERM."""

from services.common.server import run_service
from services.common.settings import CommonSettings
from services.gateway.servicer import GatewayApp
from services.gateway.settings import GatewaySettings

if __name__ == "__main__":
    settings = GatewaySettings()
    run_service("gateway", GatewayApp(settings, CommonSettings()), settings)
