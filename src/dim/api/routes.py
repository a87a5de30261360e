"""The REST API's routes, as data: method, path, the role a token needs, what it takes, and the
handler of :mod:`dim.api.resources`. The application (:mod:`dim.api.app`) and the OpenAPI
document (:mod:`dim.api.openapi`) are both made from this one table, so that neither can
name a route the other lacks.
"""

from __future__ import annotations

from collections.abc import Callable

from dim.api import resources as r
from dim.api.stream import event_stream
from dim.structs import struct

PREFIX = "/api/v1"


@struct(frozen=True, slots=True)
class Parameter:
    name: str
    where: str  # "path" or "query"
    kind: str  # "string" or "integer"
    description: str
    required: bool = False


@struct(frozen=True, slots=True)
class Member:
    """A member of a request's JSON body."""

    name: str
    kind: str = "string"  # string, integer or boolean
    required: bool = True


@struct(frozen=True, slots=True)
class Route:
    method: str
    path: str  # below PREFIX, aiohttp's {name} for a path's value
    handler: Callable
    role: str  # the token's least role: reader or admin
    summary: str
    parameters: tuple[Parameter, ...] = ()
    body: tuple[Member, ...] = ()  # the JSON body's members
    tag: str = "nodes"


NODESET = Parameter("nodeset", "query", "string", "A node set (ClusterShell syntax, @group).")
EXCLUDE = Parameter("exclude", "query", "string", "A node set to leave out.")
NODESET_PATH = Parameter(
    "nodeset", "path", "string", "A node set (URL-encoded: @ is %40).", required=True
)


def _path(name: str, description: str) -> Parameter:
    return Parameter(name, "path", "string", description, required=True)


ROUTES = (
    Route("GET", "/whoami", r.whoami, "reader", "The caller's token: name and role.", tag="api"),
    Route(
        "GET",
        "/nodes",
        r.node_list,
        "reader",
        "Nodes with their interfaces, MACs, image, server, BMC and last boot (dim node list).",
        (NODESET, EXCLUDE),
    ),
    Route(
        "GET",
        "/nodes/{name}",
        r.node_show,
        "reader",
        "One node: its record, its status and its last 50 events.",
        (_path("name", "A node's name."),),
    ),
    Route(
        "GET",
        "/status",
        r.node_status_report,
        "reader",
        "Each node's state (up, booting, down, off, unknown) and counts (dim node status).",
        (NODESET, EXCLUDE),
    ),
    Route(
        "POST",
        "/nodes/{nodeset}/switch",
        r.node_switch,
        "admin",
        "Switch nodes to an image: replicas made or found, loader files pointed at it "
        "(dim node switch). The nodes boot it at their next reset.",
        (NODESET_PATH,),
        (Member("image"),),
    ),
    Route(
        "POST",
        "/nodes/{nodeset}/image",
        r.node_set_image,
        "admin",
        "Assign an image to nodes, nothing else (dim node set --image).",
        (NODESET_PATH,),
        (Member("image"),),
    ),
    Route(
        "POST",
        "/nodes/{nodeset}/power",
        r.node_power,
        "admin",
        "A power action on nodes through their BMCs (on, off, reset, cycle, soft), as a job: "
        "its number now, each node's result at /jobs/{id}. Logged as power events.",
        (NODESET_PATH,),
        (Member("action"),),
        tag="power",
    ),
    Route(
        "POST",
        "/nodes/{nodeset}/power-status",
        r.node_power_status,
        "reader",
        "Ask nodes' BMCs for their power state, as a job (dim power status).",
        (NODESET_PATH,),
        tag="power",
    ),
    Route(
        "POST",
        "/nodes/{nodeset}/bootdev",
        r.node_bootdev,
        "admin",
        "Boot from the network (pxe) or disk next time, as a job (dim bootdev).",
        (NODESET_PATH,),
        (Member("device"),),
        tag="power",
    ),
    Route(
        "GET", "/jobs", r.job_list, "reader", "The newest jobs, without their results.", tag="power"
    ),
    Route(
        "GET",
        "/jobs/{id}",
        r.job_show,
        "reader",
        "A job: its state (running, done, failed) and each node's result.",
        (Parameter("id", "path", "integer", "The job's number.", required=True),),
        tag="power",
    ),
    Route(
        "POST",
        "/nodes/{nodeset}/reset",
        r.node_reset,
        "admin",
        "Give nodes fresh replicas of their image; the old ones are kept until image gc "
        "(dim node reset).",
        (NODESET_PATH,),
        (Member("confirm", "boolean"),),
    ),
    Route(
        "POST",
        "/images/{name}/rollback",
        r.image_rollback,
        "admin",
        "Make an image's tree a former version's again, as a new version, as a job (dim image "
        "rollback). Nodes' own changes are left alone unless force.",
        (_path("name", "An image's name."),),
        (Member("version", "integer"), Member("force", "boolean", required=False)),
        tag="images",
    ),
    Route(
        "POST",
        "/apply",
        r.apply,
        "admin",
        "Render, validate with the real daemons, install and reload, as a job (dim apply); "
        "dry_run plans and validates only.",
        body=(
            Member("dry_run", "boolean", required=False),
            Member("full", "boolean", required=False),
            Member("server", required=False),
        ),
        tag="apply",
    ),
    Route("GET", "/groups", r.group_list, "reader", "Groups: node set, size, images, servers."),
    Route(
        "GET",
        "/images",
        r.image_list,
        "reader",
        "Images declared or stored: versions, live version, users (dim image list).",
        tag="images",
    ),
    Route(
        "GET",
        "/images/{name}",
        r.image_show,
        "reader",
        "One image: versions with their history, live version, replicas (dim image show).",
        (_path("name", "An image's name."),),
        tag="images",
    ),
    Route(
        "GET",
        "/images/{name}/diff",
        r.image_diff,
        "reader",
        "Paths added, changed and removed between two versions (dim image diff).",
        (
            _path("name", "An image's name."),
            Parameter("from", "query", "integer", "The older version.", required=True),
            Parameter("to", "query", "integer", "The newer version.", required=True),
        ),
        tag="images",
    ),
    Route(
        "GET",
        "/events",
        r.event_list,
        "reader",
        "The event log, newest first: boots, MAC and image changes, with who made them.",
        (
            Parameter("node", "query", "string", "Only this node's events."),
            Parameter("limit", "query", "integer", "At most this many (1-1000, default 100)."),
            Parameter("after", "query", "integer", "Only events numbered above this."),
        ),
        tag="events",
    ),
    Route(
        "GET",
        "/events/stream",
        event_stream,
        "reader",
        "New events as they are written, as Server-Sent Events (text/event-stream): the "
        "newest 100 first, or those after ?after=ID.",
        (Parameter("after", "query", "integer", "Only events numbered above this."),),
        tag="events",
    ),
)
