"""`routectl` command line: one group, each subcommand lives in the module that does its job."""

from __future__ import annotations

import importlib

import click

from routectl import __version__

# (module, attribute) of each click command; imported lazily so `routectl agent` does not pay for boto3.
_COMMANDS: dict[str, tuple[str, str]] = {
    "agent": ("routectl.agent.main", "agent"),
    "controller": ("routectl.controller.main", "controller"),
    "ipam": ("routectl.ops.ipam_plan", "ipam"),
    "plan": ("routectl.ops.plan", "plan"),
    "simulate": ("routectl.sim.simulate", "simulate"),
    "status": ("routectl.ops.status", "status"),
}


class _LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module = importlib.import_module(target[0])
        return getattr(module, target[1])


@click.group(cls=_LazyGroup)
@click.version_option(__version__, prog_name="routectl")
def main() -> None:
    """Cloud-route IPAM for Kubernetes: pod CIDRs per node, VPC routes, egress masquerade."""


if __name__ == "__main__":
    main()
