"""GPU identity and the exclusive per-GPU lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diffusion_energy.gpu_kinds import AmbiguousGpuKind, kind_of
from diffusion_energy.measurement import gpu, gpulock

KINDS = {"h100": {"name_pattern": "H100"}, "h200": {"name_pattern": "H200"},
         "a6000": {"name_pattern": "RTX A6000"}}


@pytest.mark.parametrize(("name", "kind"), [
    ("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA H200", "h200"), ("NVIDIA RTX A6000", "a6000"),
    ("NVIDIA GeForce RTX 4090", None),
])
def test_kind_of_nvml_names(name: str, kind: str | None) -> None:
    assert kind_of(name, KINDS) == kind


CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())
#: Each shipped kind's device name as NVML (AMD SMI for the MI300X) reports it.
DEVICE_NAMES = {
    "h100": "NVIDIA H100 80GB HBM3", "h100-pcie": "NVIDIA H100 PCIe", "h200": "NVIDIA H200",
    "gh200": "NVIDIA GH200 480GB", "h20": "NVIDIA H20", "a100": "NVIDIA A100-SXM4-40GB",
    "a6000": "NVIDIA RTX A6000", "a4000": "NVIDIA RTX A4000", "l40s": "NVIDIA L40S", "l4": "NVIDIA L4",
    "rtx3090": "NVIDIA GeForce RTX 3090", "rtx4090": "NVIDIA GeForce RTX 4090", "b200": "NVIDIA B200",
    "mi300x": "AMD Instinct MI300X",
}


def test_every_shipped_kind_real_device_name_maps_to_exactly_its_kind() -> None:
    kinds = CONFIG["gpu_kinds"]
    assert set(DEVICE_NAMES) == set(kinds)
    assert {kind: kind_of(name, kinds) for kind, name in DEVICE_NAMES.items()} == {k: k for k in kinds}
    # and the names of the published sources: v2's folders, v3's gpu_model, the paper's table
    assert kind_of("H100 80GB HBM3", kinds) == "h100" and kind_of("B200", kinds) == "b200"
    assert kind_of("A100-SXM4-40GB", kinds) == kind_of("a100-40gb", kinds) == "a100"


@pytest.mark.parametrize(("name", "kind"), [
    ("NVIDIA L40S", "l40s"), ("NVIDIA L4", "l4"), ("NVIDIA L40", None), ("NVIDIA H20", "h20"),
    ("NVIDIA H200", "h200"), ("NVIDIA GH200 480GB", "gh200"), ("NVIDIA H100 PCIe", "h100-pcie"),
    ("NVIDIA H100 NVL", "h100"), ("NVIDIA A10", None), ("NVIDIA RTX 4000 Ada Generation", None),
])
def test_the_most_specific_whole_word_pattern_wins(name: str, kind: str | None) -> None:
    """An L40S is not an L4 (a substring match took it for one), nor an H200 an H20."""
    assert kind_of(name, CONFIG["gpu_kinds"]) == kind


def test_a_tie_between_patterns_is_refused_naming_both() -> None:
    kinds = {"pcie": {"name_pattern": "PCIe"}, "h100": {"name_pattern": "H100"}}
    with pytest.raises(AmbiguousGpuKind, match=r"'NVIDIA H100 PCIe' matches the name_pattern of several "
                       r"gpu_kinds, none more specific than the others: h100 \('H100'\), pcie \('PCIe'\)"):
        kind_of("NVIDIA H100 PCIe", kinds)


def test_no_gpu_means_no_local_kinds() -> None:
    if gpu.device_names():
        pytest.skip("this machine has an NVIDIA GPU")
    assert gpu.local_kinds(KINDS) == []


def test_check_kind_names_the_problem() -> None:
    with pytest.raises(gpu.GpuError, match="unknown GPU kind 'b200'"):
        gpu.check_kind("b200", KINDS)
    if gpu.device_names():
        pytest.skip("this machine has an NVIDIA GPU")
    with pytest.raises(gpu.GpuError, match="GPU not present"):
        gpu.check_kind("h100", KINDS)


def test_decode_throttle_reasons() -> None:
    import pynvml

    mask = pynvml.nvmlClocksEventReasonSwPowerCap | pynvml.nvmlClocksEventReasonHwThermalSlowdown
    assert gpu.decode_throttle(mask, pynvml) == ["sw_power_cap", "hw_thermal"]
    assert gpu.decode_throttle(0, pynvml) == []


HOLD = """
import sys, time
from diffusion_energy.measurement import gpulock
with gpulock.exclusive_gpu("GPU-test", lock_dir=sys.argv[1]):
    print("locked", flush=True)
    time.sleep(30)
"""


def test_second_job_on_a_locked_gpu_is_refused_and_lock_is_freed_on_exit(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(gpulock.GpuLockedError, match=rf"locked by pid {holder.pid}"):
            with gpulock.exclusive_gpu("GPU-test", lock_dir=tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    # The kernel released the flock when the holder died: no stale lock.
    with gpulock.exclusive_gpu("GPU-test", lock_dir=tmp_path, timeout_s=5):
        pass


def test_lock_waits_up_to_its_timeout(tmp_path: Path) -> None:
    with gpulock.exclusive_gpu("GPU-a", lock_dir=tmp_path) as path:
        assert path.name == "diffusion-energy-GPU-a.lock"
        with gpulock.exclusive_gpu("GPU-b", lock_dir=tmp_path):
            pass  # another GPU is not blocked


class FakeNvml:
    """Two GPUs as NVML lists them; process lists per GPU."""

    class NVMLError(Exception):
        pass

    def __init__(self, procs: dict[int, list[int]] | None = None) -> None:
        self.uuids = ["GPU-aaaa-0000", "GPU-bbbb-1111"]
        self.procs = procs or {}

    def nvmlDeviceGetCount(self) -> int:
        return len(self.uuids)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return self.uuids[handle]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list:
        from types import SimpleNamespace

        return [SimpleNamespace(pid=p) for p in self.procs.get(handle, [])]

    def nvmlShutdown(self) -> None:
        pass


@pytest.mark.parametrize(("visible", "uuid"), [
    (None, "GPU-aaaa-0000"), ("1", "GPU-bbbb-1111"), ("1,0", "GPU-bbbb-1111"), ("GPU-bbbb", "GPU-bbbb-1111"),
])
def test_cuda_device_0_is_found_through_nvml_and_cuda_visible_devices(
    monkeypatch: pytest.MonkeyPatch, visible: str | None, uuid: str
) -> None:
    monkeypatch.setattr(gpu, "_nvml", lambda: FakeNvml())
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert gpu.nvml_uuid_of_cuda_device(0) == uuid


@pytest.mark.parametrize("visible", ["", "7", "GPU-cccc"])
def test_hidden_or_missing_gpu_is_not_present(monkeypatch: pytest.MonkeyPatch, visible: str) -> None:
    monkeypatch.setattr(gpu, "_nvml", lambda: FakeNvml())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    with pytest.raises(gpu.GpuError, match="GPU not present"):
        gpu.nvml_uuid_of_cuda_device(0)


def test_busy_check_lists_other_processes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(gpu, "_nvml", lambda: FakeNvml({1: [4242, os.getpid()]}))
    assert gpu.other_processes("GPU-bbbb-1111") == [4242]
    assert gpu.other_processes("GPU-aaaa-0000") == []
