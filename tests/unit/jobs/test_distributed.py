"""torchrun placement: each rank runs on cuda:LOCAL_RANK, and a model on another GPU is refused before any work."""

from __future__ import annotations

import pytest
import torch

from simplebits_audit.jobs.distributed import join_world, rank_device


def _torchrun(monkeypatch, rank: int, local_rank: int, world: int = 2) -> None:
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))


def test_each_rank_runs_on_its_own_gpu(monkeypatch):
    _torchrun(monkeypatch, rank=3, local_rank=1)
    assert rank_device("cuda") == torch.device("cuda", 1)
    assert rank_device("cpu") == torch.device("cpu")


def test_a_model_on_another_gpu_than_the_ranks_is_refused_in_one_line(monkeypatch):
    _torchrun(monkeypatch, rank=1, local_rank=1)
    with pytest.raises(ValueError) as err:
        join_world(torch.device("cuda", 0))  # refused before any CUDA call or process group
    message = str(err.value)
    assert message.startswith("model: on cuda:0") and "LOCAL_RANK=1" in message and "cuda:1" in message and "\n" not in message


def test_outside_torchrun_the_device_is_the_models(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    world, device = join_world(torch.device("cuda", 0))
    assert device == torch.device("cuda", 0) and world.size == 1
