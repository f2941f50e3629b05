"""The controller's Ed25519 signing key: ``data_dir/keys/controller.key``, generated at first start, mode 0600."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared import signing

log = logging.getLogger("edgefleet.controller.keys")


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    if path.is_file():
        key = signing.load_private_key(path)
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("signing key %s is readable by others (mode %o); fixing to 0600", path, mode)
            os.chmod(path, 0o600)
        return key
    key = signing.generate_private_key()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    signing.save_private_key(key, tmp)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    log.info("generated signing key %s (key id %s)", path, signing.key_id(key.public_key()))
    return key


__all__ = ["load_or_create_key"]
