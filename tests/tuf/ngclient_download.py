"""Run python-tuf's ngclient.Updater against a repository (for Flotte's
interop tests: metadata written by Flotte's signer must be accepted by the
reference client).

    python ngclient_download.py METADATA_URL ROOT_FILE METADATA_DIR \
        TARGET_BASE_URL TARGET_DIR [TARGET_NAME...]

Refreshes, downloads every TARGET_NAME into TARGET_DIR (file named as
python-tuf names it), prints the trusted versions as JSON and exits 0; on
any failure prints the error and exits 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tuf.ngclient import Updater


def main() -> int:
    if len(sys.argv) < 6:
        print(__doc__, file=sys.stderr)
        return 1
    metadata_url, root_file, metadata_dir, target_base_url, target_dir, *names = sys.argv[1:]
    Path(metadata_dir).mkdir(parents=True, exist_ok=True)
    Path(target_dir).mkdir(parents=True, exist_ok=True)
    try:
        updater = Updater(
            metadata_dir,
            metadata_url,
            target_dir,
            target_base_url,
            bootstrap=Path(root_file).read_bytes(),
        )
        updater.refresh()
        for name in names:
            info = updater.get_targetinfo(name)
            if info is None:
                raise RuntimeError(f"target {name!r} not found")
            updater.download_target(info)
        trusted = updater._trusted_set  # noqa: SLF001 (test helper: report what was trusted)
        versions = {role: trusted[role].version for role in ("root", "timestamp", "snapshot", "targets")}
    except Exception as e:  # noqa: BLE001 (any failure is a refusal)
        print(f"ngclient refused: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(versions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
