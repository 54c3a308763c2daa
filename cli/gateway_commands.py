"""The commands that call the running gateway: recommend, similar, feedback, health. Each prints a readable
answer, or with --json the response as JSON."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import grpc
import typer
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cli.errors import gateway_errors
from cli.options import GlobalOptions, shared_options
from client.gateway import (
    feedback_request,
    format_feedback,
    format_recommendations,
    format_similar,
    open_channel,
    recommend_request,
    to_json,
)
from recsys.gateway.v1 import gateway_pb2, gateway_pb2_grpc

# The names of client.gateway's vocabularies (DEVICES, DIVERSITY_METHODS, FEEDBACK_TYPES) as choices.
DeviceName = Literal["desktop", "mobile", "tablet", "tv", "unspecified"]
DiversityMethodName = Literal["mmr", "dpp", "calibrated"]
FeedbackTypeName = Literal["click", "purchase", "rating", "view"]


@contextlib.contextmanager
def _channel(opts: GlobalOptions) -> Iterator[grpc.Channel]:
    """A channel to the gateway; a failed call in the block ends the command with one line."""
    ca_file = str(opts.ca_file) if opts.ca_file else None
    with open_channel(opts.address, ca_file, opts.token) as channel, gateway_errors(opts.address):
        yield channel


@contextlib.contextmanager
def _gateway(opts: GlobalOptions) -> Iterator[gateway_pb2_grpc.GatewayServiceStub]:
    with _channel(opts) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


def _print(message: Any, opts: GlobalOptions, text: str) -> None:
    typer.echo(to_json(message) if opts.json_ else text)


@shared_options()
def recommend(
    opts: GlobalOptions,
    user: Annotated[str, typer.Option(help="user id")],
    count: Annotated[int, typer.Option(help="how many items")] = 10,
    genre: Annotated[list[str] | None, typer.Option(metavar="GENRE", help="only items of this genre")] = None,
    exclude_genre: Annotated[list[str] | None, typer.Option(metavar="GENRE", help="no items of this genre")] = None,
    exclude_item: Annotated[list[str] | None, typer.Option(metavar="ITEM", help="not this item")] = None,
    diversity: Annotated[float | None, typer.Option(help="diversity strength, 0-1")] = None,
    diversity_method: Annotated[
        DiversityMethodName | None, typer.Option(help="the rerank service's default when unset")
    ] = None,
    device: Annotated[DeviceName, typer.Option()] = "unspecified",
    surface: Annotated[str, typer.Option(help="where the list is shown")] = "cli",
    no_explain: Annotated[bool, typer.Option("--no-explain", help="do not ask for reasons")] = False,
) -> None:
    """Recommendations for a user.

    --genre, --exclude-genre and --exclude-item can be given more than once.
    """
    request = recommend_request(
        user,
        count,
        genres=genre or (),
        exclude_genres=exclude_genre or (),
        exclude_item_ids=exclude_item or (),
        diversity=diversity,
        diversity_method=diversity_method,
        device=device,
        surface=surface,
        explain=not no_explain,
    )
    with _gateway(opts) as stub:
        reply = stub.Recommend(request, timeout=opts.timeout)
    _print(reply, opts, format_recommendations(user, reply))


@shared_options()
def similar(
    opts: GlobalOptions,
    item: Annotated[str, typer.Option(help="item id")],
    count: Annotated[int, typer.Option(help="how many items")] = 10,
) -> None:
    """Items similar to an item."""
    with _gateway(opts) as stub:
        reply = stub.SimilarItems(gateway_pb2.SimilarItemsRequest(item_id=item, count=count), timeout=opts.timeout)
    _print(reply, opts, format_similar(item, reply))


@shared_options()
def feedback(
    opts: GlobalOptions,
    user: Annotated[str, typer.Option(help="user id")],
    item: Annotated[str, typer.Option(help="item id")],
    type_: Annotated[FeedbackTypeName, typer.Option("--type")] = "click",
    value: Annotated[float, typer.Option(help="e.g. the rating")] = 1.0,
    event_id: Annotated[str | None, typer.Option(help="idempotency key (a new one by default)")] = None,
) -> None:
    """Record one interaction."""
    with _gateway(opts) as stub:
        reply = stub.RecordFeedback(feedback_request(user, item, type_, value, event_id), timeout=opts.timeout)
    _print(reply, opts, format_feedback(reply))
    if reply.rejected:
        raise typer.Exit(1)


@shared_options()
def health(opts: GlobalOptions) -> None:
    """Gateway health; exit code 1 unless SERVING."""
    with _channel(opts) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=opts.timeout)
    _print(reply, opts, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise typer.Exit(1)
