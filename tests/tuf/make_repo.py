"""Build TUF repositories with python-tuf for Flotte's interop tests.

    python make_repo.py SCENARIO OUTDIR

writes OUTDIR/root.json (the root the client is initialised with) and one
or more stages, OUTDIR/stage-N/{metadata,targets}/, each a complete
repository as served over HTTP. The Rust test (tests/tests/it/tuf_interop.rs)
serves stage 1, runs flotte-tuf-client, switches to stage 2, and so on; it
holds the expectations. Attacks are built here with python-tuf's own API
(tuf.api.metadata), then altered where an attacker would alter them.

Layout as python-tuf repositories write it: N.root.json for every root
version (and root.json), timestamp.json; with consistent snapshots
V.snapshot.json, V.<role>.json and HASH.<name> targets only; without,
snapshot.json, <role>.json and plain target names.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

TOP = ("root", "timestamp", "snapshot", "targets")


def in_days(days: float) -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=days)


def new_signer(kind: str) -> CryptoSigner:
    if kind == "ed25519":
        return CryptoSigner.generate_ed25519()
    if kind == "ecdsa":
        return CryptoSigner.generate_ecdsa()
    if kind == "rsa-pss":
        return CryptoSigner.generate_rsa(scheme="rsassa-pss-sha256", size=2048)
    if kind == "rsa-pkcs1":
        return CryptoSigner.generate_rsa(scheme="rsa-pkcs1v15-sha256", size=2048)
    raise ValueError(kind)


class Repo:
    """One repository: metadata objects, their signers, and target files."""

    def __init__(self, kinds: dict[str, str] | None = None, consistent: bool = False):
        kinds = kinds or {}
        self.signers: dict[str, list[CryptoSigner]] = {}
        root = Root(expires=in_days(365), consistent_snapshot=consistent)
        for role in TOP:
            signer = new_signer(kinds.get(role, "ed25519"))
            self.signers[role] = [signer]
            root.add_key(signer.public_key, role)
        self.root = Metadata(root)
        self.timestamp = Metadata(Timestamp(expires=in_days(1)))
        self.snapshot = Metadata(Snapshot(expires=in_days(7)))
        self.targets = Metadata(Targets(expires=in_days(30)))
        self.delegated: dict[str, Metadata[Targets]] = {}
        self.files: dict[str, bytes] = {}
        self.root_history: list[bytes] = []
        # Extra signers per role for the *current* root (old keys in a rotation).
        self.extra_root_signers: list[CryptoSigner] = []
        self.snapshot_lists_hashes = False
        self.sign_root()

    # ---- editing ---------------------------------------------------------

    def add_target(self, name: str, data: bytes, role: str = "targets") -> None:
        md = self.targets if role == "targets" else self.delegated[role]
        md.signed.targets[name] = TargetFile.from_data(name, data, ["sha256"])
        self.files[name] = data

    def delegate(self, name: str, kind: str = "ed25519", terminating: bool = False,
                 paths: list[str] | None = None, path_hash_prefixes: list[str] | None = None) -> None:
        signer = new_signer(kind)
        self.signers[name] = [signer]
        t = self.targets.signed
        if t.delegations is None:
            t.delegations = Delegations(keys={}, roles={})
        t.delegations.roles[name] = DelegatedRole(name, [], 1, terminating, paths, path_hash_prefixes)
        t.add_key(signer.public_key, name)
        self.delegated[name] = Metadata(Targets(expires=in_days(30)))

    def rotate(self, role: str, kinds: list[str], threshold: int) -> None:
        """Replace `role`'s keys in the next root version."""
        root = self.root.signed
        for keyid in list(root.roles[role].keyids):
            root.revoke_key(keyid, role)
        old = self.signers[role]
        self.signers[role] = [new_signer(k) for k in kinds]
        for s in self.signers[role]:
            root.add_key(s.public_key, role)
        root.roles[role].threshold = threshold
        if role == "root":
            self.extra_root_signers = old

    def sign_root(self, signers: list[CryptoSigner] | None = None) -> bytes:
        """Sign the current root (by the new keys and, after a rotation, the
        old ones) and append it to the history as version N."""
        md = self.root
        md.signatures.clear()
        for s in signers if signers is not None else self.signers["root"] + self.extra_root_signers:
            md.sign(s, append=True)
        data = md.to_bytes(JSONSerializer(compact=False))
        assert len(self.root_history) + 1 == md.signed.version, "root versions must chain"
        self.root_history.append(data)
        self.extra_root_signers = []
        return data

    def next_root(self) -> None:
        self.root.signed.version += 1

    def bump(self, *roles: str) -> None:
        for role in roles or ("timestamp", "snapshot", "targets"):
            self.md(role).signed.version += 1

    def md(self, role: str) -> Metadata:
        return {"timestamp": self.timestamp, "snapshot": self.snapshot, "targets": self.targets}.get(role) \
            or self.delegated[role]

    # ---- publishing ------------------------------------------------------

    def sign(self, role: str, md: Metadata) -> bytes:
        md.signatures.clear()
        for s in self.signers[role]:
            md.sign(s, append=True)
        return md.to_bytes(JSONSerializer(compact=False))

    def publish(self) -> dict[str, bytes]:
        """Sign targets → snapshot → timestamp; return the repository's files
        (relative path → bytes)."""
        consistent = bool(self.root.signed.consistent_snapshot)
        files: dict[str, bytes] = {}
        for v, data in enumerate(self.root_history, start=1):
            files[f"metadata/{v}.root.json"] = data
        files["metadata/root.json"] = self.root_history[-1]

        snap = self.snapshot.signed
        role_bytes: dict[str, bytes] = {}
        for role in ["targets", *self.delegated]:
            md = self.md(role)
            data = self.sign(role, md)
            role_bytes[role] = data
            meta = MetaFile(version=md.signed.version)
            if self.snapshot_lists_hashes:
                meta = MetaFile.from_data(md.signed.version, data, ["sha256"])
            snap.meta[f"{role}.json"] = meta
            name = quote(role, "")
            files[f"metadata/{md.signed.version}.{name}.json" if consistent else f"metadata/{name}.json"] = data

        snap_data = self.sign("snapshot", self.snapshot)
        v = snap.version
        files[f"metadata/{v}.snapshot.json" if consistent else "metadata/snapshot.json"] = snap_data
        self.timestamp.signed.snapshot_meta = MetaFile(version=v)
        files["metadata/timestamp.json"] = self.sign("timestamp", self.timestamp)

        for name, data in self.files.items():
            if consistent:
                digest = TargetFile.from_data(name, data, ["sha256"]).hashes["sha256"]
                head, sep, base = name.rpartition("/")
                files[f"targets/{head}{sep}{digest}.{base}"] = data
            else:
                files[f"targets/{name}"] = data
        return files


def write(outdir: Path, stage: int, files: dict[str, bytes]) -> None:
    base = outdir / f"stage-{stage}"
    for rel, data in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def duplicate_first_signature(data: bytes) -> bytes:
    doc = json.loads(data)
    doc["signatures"] = [doc["signatures"][0], copy.deepcopy(doc["signatures"][0])]
    return json.dumps(doc).encode()


# ---- scenarios -------------------------------------------------------------
# Each returns the list of stages (dicts of files) and the initial root bytes.

def basic(kinds=None, consistent=False):
    repo = Repo(kinds, consistent)
    repo.add_target("hello.txt", b"hello from python-tuf\n")
    repo.add_target("dir/file.txt", b"a file in a directory\n")
    return repo, [repo.publish()]


SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__.replace("_", "-")] = fn
    return fn


@scenario
def plain():
    repo, stages = basic()
    return repo.root_history[0], stages


@scenario
def consistent():
    repo, stages = basic(consistent=True)
    repo.bump()
    repo.add_target("hello.txt", b"hello again, version 2\n")
    stages.append(repo.publish())
    return repo.root_history[0], stages


@scenario
def delegation():
    repo = Repo()
    repo.add_target("hello.txt", b"top-level\n")
    repo.delegate("team-x", terminating=True, paths=["team-x/*"])
    repo.add_target("team-x/app.tar", b"team x app\n", role="team-x")
    # Outside team-x's paths: a client must never take it from team-x.
    repo.add_target("other/evil.txt", b"not yours\n", role="team-x")
    prefix = hashlib.sha256(b"bins/hashed.bin").hexdigest()[:4]
    repo.delegate("bins", kind="ecdsa", path_hash_prefixes=[prefix])
    repo.add_target("bins/hashed.bin", b"\x00\x01binary\xff", role="bins")
    return repo.root_history[0], [repo.publish()]


@scenario
def ecdsa():
    repo, stages = basic({r: "ecdsa" for r in TOP})
    return repo.root_history[0], stages


@scenario
def rsa():
    repo, stages = basic({"root": "rsa-pss", "targets": "rsa-pkcs1", "snapshot": "rsa-pss", "timestamp": "rsa-pkcs1"},
                         consistent=True)
    return repo.root_history[0], stages


@scenario
def root_rotation():
    """v1 1-of-1 → v2 2-of-3 (ed25519, ecdsa, rsa), signed by old and new
    thresholds → v3 signed by 2 of the new keys."""
    repo, stages = basic()
    repo.next_root()
    repo.rotate("root", ["ed25519", "ecdsa", "rsa-pss"], 2)
    repo.sign_root()
    repo.next_root()
    repo.sign_root(repo.signers["root"][1:])
    stages.append(repo.publish())
    return repo.root_history[0], stages


@scenario
def root_rotation_without_old_signatures():
    repo, stages = basic()
    repo.next_root()
    repo.rotate("root", ["ed25519", "ed25519", "ed25519"], 2)
    repo.sign_root(repo.signers["root"])  # the new keys only
    stages.append(repo.publish())
    return repo.root_history[0], stages


@scenario
def root_rotation_missing_new_threshold():
    repo, stages = basic()
    repo.next_root()
    old = repo.signers["root"]
    repo.rotate("root", ["ed25519", "ed25519", "ed25519"], 2)
    repo.sign_root(old + repo.signers["root"][:1])  # old key + only 1 of 2 new
    stages.append(repo.publish())
    return repo.root_history[0], stages


@scenario
def rollback_root():
    repo, stages = basic()
    repo.next_root()
    repo.sign_root()
    stage = repo.publish()
    stages = [stage, dict(stage, **{"metadata/3.root.json": repo.root_history[0]})]
    return repo.root_history[0], stages


@scenario
def fast_forward():
    """The timestamp key is abused to publish v1000; the next root rotates
    the timestamp and snapshot keys and the repository starts over."""
    repo, _ = basic()
    repo.timestamp.signed.version = 1000
    repo.snapshot.signed.version = 1000
    stage1 = repo.publish()
    repo.next_root()
    repo.rotate("timestamp", ["ed25519"], 1)
    repo.rotate("snapshot", ["ed25519"], 1)
    repo.sign_root()
    repo.timestamp.signed.version = 1
    repo.snapshot.signed.version = 1
    return repo.root_history[0], [stage1, repo.publish()]


def expired(role):
    repo, _ = basic()
    if role == "root":
        repo.root.signed.expires = in_days(-1)
        repo.root_history.clear()
        repo.sign_root()
    else:
        repo.md(role).signed.expires = in_days(-1)
    return repo.root_history[0], [repo.publish()]


for _role in ("root", "timestamp", "snapshot", "targets"):
    SCENARIOS[f"expired-{_role}"] = (lambda r: lambda: expired(r))(_role)


@scenario
def rollback_timestamp():
    repo, _ = basic()
    old = repo.publish()["metadata/timestamp.json"]
    repo.bump("timestamp")
    stage = repo.publish()
    return repo.root_history[0], [stage, dict(stage, **{"metadata/timestamp.json": old})]


@scenario
def rollback_snapshot():
    """A newer timestamp (signed with the timestamp key) lists an older snapshot."""
    repo, _ = basic()
    repo.bump("timestamp", "snapshot")
    stage1 = repo.publish()
    repo.bump("timestamp")
    repo.snapshot.signed.version = 1
    return repo.root_history[0], [stage1, repo.publish()]


@scenario
def rollback_targets():
    """A newer snapshot (signed with the snapshot key) lists an older targets."""
    repo, _ = basic()
    repo.bump()
    stage1 = repo.publish()
    repo.bump("timestamp", "snapshot")
    repo.targets.signed.version = 1
    return repo.root_history[0], [stage1, repo.publish()]


@scenario
def mix_and_match():
    """Snapshot v2 lists targets v2, but the old targets v1 is served."""
    repo, _ = basic()
    stage1 = repo.publish()
    repo.bump()
    repo.add_target("hello.txt", b"hello, version 2\n")
    stage2 = repo.publish()
    stage2["metadata/targets.json"] = stage1["metadata/targets.json"]
    return repo.root_history[0], [stage1, stage2]


@scenario
def wrong_target_hash():
    repo, stages = basic()
    stages[0]["targets/hello.txt"] = b"jello from python-tuf\n"
    return repo.root_history[0], stages


@scenario
def wrong_target_length():
    repo, stages = basic()
    stages[0]["targets/hello.txt"] = b"hello from python-tuf\n" + b"and much more\n" * 1000
    return repo.root_history[0], stages


@scenario
def threshold_not_met():
    """targets is 2-of-2, but only one key signed."""
    repo, _ = basic()
    repo.next_root()
    repo.rotate("targets", ["ed25519", "ecdsa"], 2)
    repo.sign_root()
    repo.signers["targets"] = repo.signers["targets"][:1]
    return repo.root_history[0], [repo.publish()]


@scenario
def duplicate_signature():
    """targets is 2-of-2; one key's signature appears twice."""
    repo, _ = basic()
    repo.next_root()
    repo.rotate("targets", ["ed25519", "ed25519"], 2)
    repo.sign_root()
    stage = repo.publish()
    repo.signers["targets"] = repo.signers["targets"][:1]
    stage["metadata/targets.json"] = duplicate_first_signature(repo.sign("targets", repo.targets))
    return repo.root_history[0], [stage]


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in SCENARIOS:
        sys.exit(f"usage: make_repo.py {{{'|'.join(sorted(SCENARIOS))}}} OUTDIR")
    outdir = Path(sys.argv[2])
    root, stages = SCENARIOS[sys.argv[1]]()
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "root.json").write_bytes(root)
    for i, files in enumerate(stages, start=1):
        write(outdir, i, files)


if __name__ == "__main__":
    main()
