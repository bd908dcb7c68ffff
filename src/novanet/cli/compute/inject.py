"""`novanet inject`: write an instance's network configuration into its guest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from novanet.cli import output
from novanet.cli.options import option
from novanet.cli.state import service
from novanet.domain.errors import InvalidInput

INTERFACES = "/etc/network/interfaces"


def inject(
    ctx: typer.Context,
    uuid: Annotated[str, typer.Argument(metavar="UUID", help="UUID of the instance.")],
    image: Annotated[
        Path | None,
        option(
            "--image", metavar="FILE", help="Raw guest disk: an ext4 filesystem, or a disk with --partition."
        ),
    ] = None,
    partition: Annotated[
        int | None,
        option("--partition", metavar="N", help="With --image: ext4 partition N of an MBR/GPT disk."),
    ] = None,
    root: Annotated[
        Path | None, option("--root", metavar="DIR", help="Guest root directory tree to write under.")
    ] = None,
    config_drive: Annotated[
        Path | None,
        option(
            "--config-drive",
            metavar="FILE",
            help="Write an ISO 9660 config drive (label config-2, OpenStack network_data.json).",
        ),
    ] = None,
    as_json: Annotated[bool, option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Render the instance's network configuration and write it into its guest.

    --image and --root write /etc/network/interfaces (the original's Flat-mode
    injection: only networks with `injected` set, eth<N> in VIF order); --config-drive
    writes openstack/latest/network_data.json and meta_data.json for cloud-init/Glean.
    """
    from novanet.inject import render
    from novanet.service import instances as I

    targets = [t for t in (image, root, config_drive) if t is not None]
    if len(targets) != 1:
        raise InvalidInput("give exactly one of --image FILE, --root DIR or --config-drive FILE")
    if partition is not None and image is None:
        raise InvalidInput("--partition goes with --image")
    svc = service(ctx)
    info = I.show(svc, uuid)
    single = svc.config.use_single_default_gateway
    result: dict[str, Any] = {"uuid": info["uuid"]}
    if config_drive is not None:
        from novanet.inject import configdrive

        files = configdrive.build(
            config_drive,
            render.meta_data(info["uuid"], info["hostname"]),
            render.network_data(info["network_info"], single_gateway=single),
        )
        result.update(config_drive=str(config_drive), files=files)
        text = f"wrote config drive {config_drive} ({', '.join(files)})"
    else:
        content = render.interfaces(info["network_info"], single_gateway=single)
        if content is None:
            raise InvalidInput(
                f"instance {info['uuid']} has no injected network: nothing to inject"
                " (network create --injected, or flat_injected = True in Flat mode)"
            )
        files_map = {INTERFACES: content.encode()}
        if image is not None:
            from novanet.inject import ext4

            written = ext4.write_files(image, files_map, partition)
            where = f"{image}" + (f" partition {partition}" if partition else "")
        else:
            from novanet.inject import tree

            assert root is not None
            written = tree.write_files(root, files_map)
            where = str(root)
        result.update(
            target=where,
            files=[
                {"path": w.path, "size": w.size, "mode": f"{w.mode:04o}", "uid": w.uid, "gid": w.gid}
                for w in written
            ],
            interfaces=content,
        )
        text = f"wrote {INTERFACES} into {where}"
    if as_json:
        output.emit_json(result)
        return
    output.message(text)
