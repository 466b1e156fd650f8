"""`sam` (the SAM CLI, .venv-sam), for `sam local invoke` against moto on 127.0.0.1: with
`--docker-network host` the function's container is on the host's network, and the
`AWS_ENDPOINT_URL` that sam runs with reaches the function, as SAM passes region and
credentials.

SAM CLI 1.170 accepts `--docker-network host` but creates the container on Docker's default
network anyway (it only skips connecting it to a network named "host"), publishes the
emulator's port, and waits for it there: the function cannot reach a server on the host's
loopback. Here, for that option only, the container is created with network_mode "host", and
the Runtime Interface Emulator listens on the loopback port SAM already chose (its runtime API
on another free one), instead of 8080 and 9001 that anything on the machine may hold.
And SAM hands a container only the variables the template declares (an --env-vars file cannot
add one) plus region and credentials; the endpoint is added to those here. Everything else is
SAM's own code.

Usage: python scripts/sam_local.py local invoke ... --docker-network host ...
"""

import os
import socket
import sys

from docker.models.containers import ContainerCollection
from samcli.cli.main import cli
from samcli.local.docker import container as sam_container
from samcli.local.lambdafn.env_vars import EnvironmentVariables


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_create = sam_container.Container.create


def _create_on_host_network(self, *args, **kwargs):
    if self.network_id != "host":
        return _create(self, *args, **kwargs)
    entrypoint = list(self._entrypoint or [])
    if entrypoint and entrypoint[0].endswith("aws-lambda-rie"):
        self._entrypoint = entrypoint + [
            "--runtime-interface-emulator-address", f"127.0.0.1:{self.rapid_port_host}",
            "--runtime-api-address", f"127.0.0.1:{_free_port()}",
        ]
    options = dict(self._container_opts or {})
    options["network_mode"] = "host"
    self._container_opts = options
    return _create(self, *args, **kwargs)


_collection_create = ContainerCollection.create


def _create_without_published_ports(self, image, command=None, **kwargs):
    # On the host's network a port is not published: the emulator listens on it directly.
    if kwargs.get("network_mode") == "host":
        kwargs.pop("ports", None)
    return _collection_create(self, image, command, **kwargs)


ContainerCollection.create = _create_without_published_ports
sam_container.Container.create = _create_on_host_network

_aws_variables = EnvironmentVariables._get_aws_variables


def _aws_variables_with_endpoint(self):
    result = _aws_variables(self)
    if os.environ.get("AWS_ENDPOINT_URL"):
        result["AWS_ENDPOINT_URL"] = os.environ["AWS_ENDPOINT_URL"]
    return result


EnvironmentVariables._get_aws_variables = _aws_variables_with_endpoint

if __name__ == "__main__":
    sys.exit(cli())
