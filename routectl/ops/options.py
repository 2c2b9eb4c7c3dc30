"""Click options plan/status share with `routectl controller`: same flag names, same ROUTECTL_* environment
variables (routectl.controller.config.ENV_VARS), same loader (`load_config`), so a shell set up for the
controller — or the simulation's `SimCluster.controller_env()` — works unchanged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from routectl.controller.config import ENV_VARS, Config, load_config

CLOUD_FIELDS = ("cluster_name", "provider", "kubeconfig", "gce_project", "gce_network", "gce_endpoint",
                "aws_region", "aws_route_table_ids", "aws_endpoint")


def _env(name: str) -> str:
    return f"[env {ENV_VARS[name]}]"


_OPTIONS: list[Callable[[Any], Any]] = [
    click.option("--cluster-name",
                 help=f"Cluster name (cloud route names / AWS table tag). {_env('cluster_name')}"),
    click.option("--provider", type=click.Choice(["gce", "aws"]), help=f"Cloud provider. {_env('provider')}"),
    click.option("--kubeconfig", help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)."),
    click.option("--gce-project", help=f"GCE project. {_env('gce_project')}"),
    click.option("--gce-network", help=f"GCE network name. {_env('gce_network')}"),
    click.option("--gce-endpoint", help=f"Compute API endpoint (fake server). {_env('gce_endpoint')}"),
    click.option("--aws-region", help=f"AWS region. {_env('aws_region')}"),
    click.option("--aws-route-table-id", "aws_route_table_ids", multiple=True,
                 help=f"Route table (repeatable). {_env('aws_route_table_ids')} (comma list)"),
    click.option("--aws-endpoint", help=f"EC2 endpoint URL (moto). {_env('aws_endpoint')}"),
]

output_option = click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table",
                             show_default=True, help="Aligned text or the documented JSON shape.")


def cloud_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a command with the controller's cluster and cloud options."""
    for opt in reversed(_OPTIONS):
        fn = opt(fn)
    return fn


def config_from(flags: dict[str, Any]) -> Config:
    """A validated controller Config from these options (flags over env over defaults); bad input is a
    click.UsageError (exit 2) naming every problem."""
    try:
        return load_config({k: v for k, v in flags.items() if k in CLOUD_FIELDS})
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
