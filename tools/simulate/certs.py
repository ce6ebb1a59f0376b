"""Device certificates for Azure mode, and the devices registered as MQTT clients of
the Event Grid namespace (docs/deploy.md, "Onboarding a device"), either way Event
Grid authenticates clients:

- by thumbprint (the default): a self-signed X.509 certificate per device, its client
  registered with the certificate's thumbprint;
- by CA chain (``--ca``, for large fleets: no thumbprint per client to keep up to
  date): a CA of the simulator's (``ca.pem``, ``ca.key``) issues each device's
  certificate with the device id as its subject's common name; the CA certificate is
  registered on the namespace (``caCertificates``) and each client validated by
  ``SubjectMatchesAuthenticationName``.

``python -m tools.simulate.certs create|register|delete --devices N [--ca]`` (``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from azure.core.exceptions import ClientAuthenticationError

from tools.simulate.arm_clients import ARM_URL, ArmError, register_devices, unregister_devices
from tools.simulate.device_certs import DEFAULT_DIRECTORY, ROOT, device_ids, ensure_ca, ensure_certificates
from tools.simulate.target import TargetError, azd_environment

# The command line: the certificates are made by tools.simulate.device_certs, the
# clients registered by tools.simulate.arm_clients.


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.simulate.certs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("create", "register", "delete"),
                   help="create certificates; register the devices (creating what is missing); delete them")
    p.add_argument("--devices", type=int, required=True, help="how many: sim-000 to sim-<N-1>")
    p.add_argument("--prefix", default="sim-", help="device id prefix (default sim-, as the simulator's)")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIRECTORY,
                   help=f"certificates and keys (default {DEFAULT_DIRECTORY.relative_to(ROOT)})")
    p.add_argument("--env", help="azd environment (default: AZURE_ENV_NAME, else azd's default)")
    p.add_argument("--project-dir", type=Path, default=Path.cwd(), metavar="DIR",
                   help="where .azure/ is (default: the current directory)")
    p.add_argument("--subscription", help="subscription id (default: the azd environment's)")
    p.add_argument("--resource-group", help="resource group (default: the azd environment's)")
    p.add_argument("--namespace", help="Event Grid namespace (default: the azd environment's)")
    p.add_argument("--group", action="append", help="group attribute, given to the devices in turn when given "
                   "more than once (default: line-a, line-b, as the simulator's)")
    p.add_argument("--type", default="camera", help="type attribute (default camera)")
    p.add_argument("--ca", action="store_true",
                   help="issue the certificates from the simulator's CA (ca.pem in --dir, made if missing), "
                        "register the CA on the namespace and the clients by subject, not thumbprint")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.devices < 1:
            raise ValueError("--devices must be 1 or more")
        ids = device_ids(args.devices, args.prefix)
        if args.action == "create":
            for certificate in ensure_certificates(ids, args.dir, ensure_ca(args.dir) if args.ca else None):
                print(f"{certificate.device_id} {certificate.thumbprint} {certificate.certfile}")
            return 0
        return asyncio.run(_azure(args, ids))
    except (ValueError, ArmError, OSError, TargetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ClientAuthenticationError as error:
        print(f"error: no Azure sign-in to use (`az login` or `azd auth login`): {error.message}", file=sys.stderr)
        return 1


async def _azure(args: argparse.Namespace, ids: list[str]) -> int:
    from azure.identity.aio import DefaultAzureCredential

    from tools.simulate.operator import GROUPS

    env = azd_environment(args.project_dir, args.env, os.environ)[1]
    where = {"subscription_id": args.subscription or env.get("AZURE_SUBSCRIPTION_ID", ""),
             "resource_group": args.resource_group or env.get("AZURE_RESOURCE_GROUP", ""),
             "namespace": args.namespace or env.get("EVENTGRID_NAMESPACE_NAME", "")}
    missing = [flag for flag, key in (("--subscription", "subscription_id"), ("--resource-group", "resource_group"),
                                      ("--namespace", "namespace")) if not where[key]]
    if missing:
        raise ValueError(f"no {', '.join(missing)} given and no azd environment has them "
                         "(run `azd provision`, or pass --env)")
    async with DefaultAzureCredential() as credential:
        if args.action == "delete":
            await unregister_devices(ids, credential=credential, arm_url=ARM_URL, **where)
            print(f"{len(ids)} devices deleted from {where['namespace']}")
            return 0
        groups = args.group or list(GROUPS)
        ca = ensure_ca(args.dir) if args.ca else None
        certificates = ensure_certificates(ids, args.dir, ca)
        attributes = {d: {"type": args.type, "group": groups[i % len(groups)]} for i, d in enumerate(ids)}
        await register_devices(certificates, attributes=attributes, credential=credential, arm_url=ARM_URL,
                               ca=ca, **where)
        print(f"{len(ids)} devices registered in {where['namespace']}; certificates in {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
