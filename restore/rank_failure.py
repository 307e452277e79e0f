"""When one rank of a DDP run fails, every rank ends with one line that says which and how to go on.

A rank that raises writes its one-line error into ``<checkpoint dir>/.ranks/<rank>.failed``
and leaves the process group, so its peers fail at once in their next collective instead
of waiting there. A rank that is killed leaves no note, but its connections close, and its
peers' next collective fails (gloo sees the closed connection; NCCL waits for the process
group's timeout). Each rank registers ``<rank>.alive`` (host and process id) when training
starts, so a peer that meets a broken collective can name the rank whose process is gone
(on its own host; on another host it can only say that a peer stopped).

Every surviving rank then prints one line: which rank failed and why where known, the newest
complete ``last.ckpt``, and ``ckpt_path=last``. Rank 0 prints first: the others wait until it
has (or is gone), so the line on top of the terminal is rank 0's.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

from restore.errors import full_trace_wanted, one_line

RANK_ZERO_WAIT_S = 20.0
EXIT_STATUS = 4  # a failed peer; a rank's own error exits with 1


class RankRegistry(pl.Callback):
    """Registers each rank of a multi-process run under ``folder`` while it trains."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def setup(self, trainer: pl.Trainer, pl_module, stage: str) -> None:
        if trainer.world_size < 2 or stage != "fit":
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        for note in (f"{trainer.global_rank}.failed", f"{trainer.global_rank}.reported"):
            (self.folder / note).unlink(missing_ok=True)  # the notes of an earlier leg
        (self.folder / f"{trainer.global_rank}.alive").write_text(f"{socket.gethostname()} {os.getpid()}\n")
        trainer.strategy.barrier("rank-registry")  # every earlier note is gone before anyone can fail

    def teardown(self, trainer: pl.Trainer, pl_module, stage: str) -> None:
        if trainer.world_size >= 2 and stage == "fit":
            (self.folder / f"{trainer.global_rank}.alive").unlink(missing_ok=True)


def is_peer_failure(err: BaseException) -> bool:
    """A collective that broke because another rank is gone (gloo, NCCL or the store)."""
    if isinstance(err, torch.distributed.DistError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and any(
        mark in text for mark in ("Connection closed by peer", "Connection reset by peer", "gloo", "NCCL")
    )


def failed_ranks(folder: Path, world_size: int, me: int) -> list[str]:
    """What the notes and the registered processes tell about the other ranks."""
    found = []
    host = socket.gethostname()
    for rank in range(world_size):
        if rank == me:
            continue
        note = folder / f"{rank}.failed"
        if note.is_file():
            found.append(f"rank {rank} failed: {note.read_text().strip()}")
            continue
        alive = folder / f"{rank}.alive"
        if not alive.is_file():
            continue
        rank_host, pid = alive.read_text().split()
        if rank_host == host and not _running(int(pid)):
            found.append(f"rank {rank} died (process {pid} is gone)")
    return found


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed rank that rank 0 launched stays a zombie until rank 0 reaps it
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def end_rank(trainer: pl.Trainer, err: BaseException, folder: Path, resume: str) -> None:
    """Print this rank's one line about ``err`` and exit; ``resume`` says where to go on from."""
    rank, world_size = trainer.global_rank, trainer.world_size
    if is_peer_failure(err):
        causes = failed_ranks(folder, world_size, rank) or [f"another rank stopped ({one_line(err)})"]
        line, status = f"error: rank {rank}: {'; '.join(causes)}; every rank stopped; {resume}", EXIT_STATUS
    else:
        line, status = f"error: rank {rank}: {one_line(err)}; every rank stopped; {resume}", 1
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{rank}.failed").write_text(one_line(err) + "\n")  # before leaving: the peers read it
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # the peers' next collective fails now
    if rank != 0:
        _wait_for_rank_zero(folder)
    if full_trace_wanted():
        raise err
    print(line, file=sys.stderr, flush=True)
    if rank == 0:
        (folder / "0.reported").touch()
    sys.exit(status)


def _wait_for_rank_zero(folder: Path) -> None:
    """Until rank 0 has printed its line or is gone, at most RANK_ZERO_WAIT_S: the first line a user
    reads is rank 0's, and a rank that Lightning launched must not exit before it (Lightning then
    kills rank 0 at once, before it can say anything)."""
    deadline = time.monotonic() + RANK_ZERO_WAIT_S
    alive = folder / "0.alive"
    while time.monotonic() < deadline and not (folder / "0.reported").exists():
        if alive.is_file():
            host, pid = alive.read_text().split()
            if host == socket.gethostname() and not _running(int(pid)):
                return
        time.sleep(0.1)
