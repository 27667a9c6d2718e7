"""The journal: a rerun reuses a journaled point only if it is a measurement this job would make now.

The measuring job runs in-process with the GPU claim and the measurement replaced by fakes
(no GPU here): every reason to measure again, damaged entries, the GPU checked before
anything journaled is copied, and nothing measured is ever lost.
"""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from diffusion_energy import atomic, cli, grid
from diffusion_energy.cli import measurement as cli_measurement
from diffusion_energy.measurement import bench, gpu, journal, measure
from diffusion_energy.models import zoo

UUID = "GPU-11111111-2222-3333-4444-555555555555"
POINTS = "32px_2steps_cfg1_b1,64px_2steps_cfg1_b1"
PROTOCOL = {"idle_s": 0.0, "min_window_s": 0.0, "repeats": 2, "warmup": 1, "warmup_s": 0.0}
KINDS = {"h100": {"name_pattern": "H100"}}


class Harness:
    """Runs ``diffusion-energy measure`` in-process on a fake H100; records what happened."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.out = tmp_path / "m"
        self.events: list[str] = []
        self.uuid = UUID
        self.refuse: Exception | None = None
        self.monkeypatch = monkeypatch
        monkeypatch.setattr(cli_measurement, "claim_gpu", self._claim)
        monkeypatch.setattr(bench, "gpu_bench", lambda *a, **k: bench.Bench(object(), "cuda", dict))  # type: ignore[arg-type]
        monkeypatch.setattr(measure, "measure_group", self._measure_group)

    def _claim(self, stack: Any, kind: str, kinds: dict, *args: Any) -> str:
        self.events.append("claim")
        if self.refuse:
            raise self.refuse
        return self.uuid

    def _measure_group(
        self,
        spec: zoo.ModelSpec,
        points: list[grid.GridPoint],
        kind: str,
        meter: Any,
        protocol: measure.Protocol,
        device: str,
        context: Any = None,
        timings: Any = None,
        **_: Any,
    ):
        for p in points:
            self.events.append(f"measure {p.slug}")
            stages = {
                s: [measure.StageResult(s, r, e, 1.0, 1.0, 1) for r in range(protocol.repeats)]
                for s, e in (("text", 10.0), ("denoise", 80.0), ("vae", 10.0), ("image", 100.0))
            }
            ctx = {
                **measure.library_versions(),
                "gpu_uuid": self.uuid,
                "gpu_name": "NVIDIA H100 80GB HBM3",
                "weights_source": "random-init",
            }
            yield p, measure.point_rows(p, kind, spec, stages, 50.0, protocol, ctx, "measured")

    def run(self, *extra: str, protocol: dict | None = None) -> int:
        self.events.clear()
        return cli.main(
            [
                "measure",
                "--gpu",
                "h100",
                "--model",
                "tiny-sd",
                "--precision",
                "fp32",
                "--points",
                POINTS,
                "--outdir",
                str(self.out),
                "--protocol",
                json.dumps(protocol or PROTOCOL),
                "--gpu-kinds",
                json.dumps(KINDS),
                "--summary",
                str(self.out.parent / "job.json"),
                *extra,
            ]
        )

    def output(self, slug: str = "32px_2steps_cfg1_b1") -> Path:
        return self.out / "h100" / "tiny-sd" / "fp32" / f"{slug}.parquet"

    def journaled(self, slug: str = "32px_2steps_cfg1_b1") -> Path:
        return self.out / ".journal" / "h100" / "tiny-sd" / "fp32" / f"{slug}.parquet"

    def measured(self) -> list[str]:
        return [e.split()[1] for e in self.events if e.startswith("measure ")]

    def job(self) -> dict:
        return json.loads((self.out.parent / "job.json").read_text())


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Harness:
    caplog.set_level(logging.INFO)
    h = Harness(tmp_path, monkeypatch)
    assert h.run() == 0
    assert h.measured() == ["32px_2steps_cfg1_b1", "64px_2steps_cfg1_b1"]
    for slug in POINTS.split(","):  # Snakemake deletes a job's outputs before rerunning it
        h.output(slug).unlink()
    return h


def test_a_measured_point_of_the_same_gpu_protocol_and_versions_is_reused(harness: Harness) -> None:
    journaled = pd.read_parquet(harness.journaled())
    assert harness.run() == 0
    assert harness.measured() == [] and harness.events == ["claim"]
    pd.testing.assert_frame_equal(pd.read_parquet(harness.output()), journaled)
    assert harness.job()["reused"] == ["fp32/32px_2steps_cfg1_b1", "fp32/64px_2steps_cfg1_b1"]
    assert journal.sidecar(harness.journaled()).is_file()


def _rewrite(path: Path, **columns: Any) -> None:
    rows = pd.read_parquet(path)
    for col, value in columns.items():
        rows[col] = value
    rows.to_parquet(path)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            {
                "energy_status": "absent: no NVIDIA GPU: energy not measured on the CPU",
                "energy_j": float("nan"),
                "dynamic_energy_j": float("nan"),
            },
            "journaled without measured energy (absent: no NVIDIA GPU",
        ),
        (
            {
                "status": "oom",
                "energy_status": "absent: oom",
                "energy_j": float("nan"),
                "dynamic_energy_j": float("nan"),
            },
            "journaled as 'oom', not measured",
        ),
        (
            {"measurement_code": "sha256:000000000000"},
            "measured by code sha256:000000000000, now sha256:",
        ),
        (
            {"protocol": json.dumps({**measure.Protocol(**PROTOCOL).__dict__, "idle_s": 9.0},
                                    sort_keys=True)},
            "measured with protocol idle_s 9.0, now 0.0",
        ),
        ({"min_window_s": 2.0}, "measured with protocol min_window_s 2.0, now 0.0"),
        ({"warmup": 5}, "measured with protocol warmup 5, now 1"),
        ({"torch_version": "1.0.0"}, "measured with torch_version 1.0.0, now "),
        ({"diffusers_version": "0.1.0"}, "measured with diffusers_version 0.1.0, now "),
    ],
    ids=[
        "cpu-run-no-energy",
        "oom",
        "other-code",
        "protocol-recorded-in-rows",
        "protocol-window",
        "protocol-warmup",
        "torch-version",
        "diffusers-version",
    ],
)
def test_a_journaled_point_that_is_not_this_measurement_is_measured_again(
    harness: Harness, caplog: pytest.LogCaptureFixture, change: dict, reason: str
) -> None:
    _rewrite(harness.journaled(), **change)
    before = pd.read_parquet(harness.journaled())
    caplog.clear()
    assert harness.run() == 0
    assert harness.measured() == ["32px_2steps_cfg1_b1"], "only the mismatching point is measured again"
    assert harness.events[0] == "claim"
    assert f"fp32/32px_2steps_cfg1_b1: measuring the journaled point again: {reason}" in caplog.text
    assert reason in harness.job()["remeasured"]["fp32/32px_2steps_cfg1_b1"]
    fresh = pd.read_parquet(harness.output())
    assert (fresh["energy_status"] == "measured").all() and (fresh["gpu_uuid"] == UUID).all()
    kept = list(harness.journaled().parent.glob(".superseded/32px_2steps_cfg1_b1.*.parquet"))
    if before["energy_status"].eq("measured").all() and before["status"].eq("ok").all():
        # A measurement the new one replaces is kept, never deleted.
        assert len(kept) == 1
        pd.testing.assert_frame_equal(pd.read_parquet(kept[0]), before)


def test_a_point_measured_on_another_card_of_the_kind_is_reused(harness: Harness) -> None:
    """A campaign's next run is on a fresh machine (another UUID): reuse keys on the GPU kind, the
    protocol and the code, and the rows keep the card that measured them."""
    _rewrite(harness.journaled(), gpu_uuid="GPU-99999999-0000-0000-0000-000000000000")
    assert harness.run() == 0
    assert harness.measured() == [], "both journaled points are reused"
    kept = pd.read_parquet(harness.output())
    assert (kept["gpu_uuid"] == "GPU-99999999-0000-0000-0000-000000000000").all()
    assert kept["measurement_code"].iloc[0] == journal.measurement_code("tiny-sd")
    assert json.loads(kept["protocol"].iloc[0]) == {**measure.Protocol(**PROTOCOL).__dict__}


def test_other_repeats_or_sidecar_protocol_are_measured_again(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    assert harness.run(protocol={**PROTOCOL, "repeats": 3}) == 0
    assert "measured with protocol repeats 2, now 3" in caplog.text  # every setting is in the rows
    assert harness.measured() == ["32px_2steps_cfg1_b1", "64px_2steps_cfg1_b1"]
    caplog.clear()
    # rows from before the protocol column: their repeats, recorded settings and the sidecar
    for slug in POINTS.split(","):
        _rewrite(harness.journaled(slug), protocol=None)
    assert harness.run(protocol={**PROTOCOL, "repeats": 2}) == 0
    assert "measured with 3 repeats, the protocol asks for 2" in caplog.text
    caplog.clear()
    for slug in POINTS.split(","):
        _rewrite(harness.journaled(slug), protocol=None)
    assert harness.run(protocol={**PROTOCOL, "repeats": 2, "idle_s": 5.0}) == 0
    assert "measured with protocol idle_s 0.0, now 5.0" in caplog.text  # only the sidecar records idle_s


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "is unreadable"),
        (lambda p: p.write_text("not a parquet file"), "is unreadable"),
        (lambda p: p.write_bytes(b""), "is unreadable"),
        (lambda p: _rewrite(p, energy_j=-5.0), "non-positive energy or none in column 'energy_j'"),
        (lambda p: _rewrite(p, stage="decode"), "column 'stage' has 'decode'"),
    ],
    ids=["truncated", "garbage", "empty-file", "negative-energy", "unknown-stage"],
)
def test_a_damaged_journal_entry_is_measured_again_with_a_warning(
    harness: Harness, caplog: pytest.LogCaptureFixture, damage: Any, needle: str
) -> None:
    damage(harness.journaled())
    caplog.clear()
    assert harness.run() == 0, "a damaged entry is never a permanent failure"
    assert harness.measured() == ["32px_2steps_cfg1_b1"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(needle in r.getMessage() and "measuring it again" in r.getMessage() for r in warnings)
    assert any(needle in w for w in harness.job()["warnings"])
    assert (pd.read_parquet(harness.journaled())["energy_status"] == "measured").all()
    assert harness.run() == 0 and harness.measured() == [], "the new entry is reused next time"


def test_nothing_journaled_is_copied_before_the_gpu_is_claimed(harness: Harness, capsys: Any) -> None:
    harness.refuse = gpu.GpuError(
        "wrong GPU for this job: it measures kind 'h100' but CUDA device 0 is 'NVIDIA A100' (kind a100)"
    )
    journaled = {p: p.read_bytes() for p in harness.journaled().parent.glob("*.parquet")}
    assert harness.run() == 2
    assert "error: wrong GPU for this job" in capsys.readouterr().err
    assert not list((harness.out / "h100").rglob("*.parquet")), "no output from a refused job"
    assert {p: p.read_bytes() for p in harness.journaled().parent.glob("*.parquet")} == journaled


def test_a_full_disk_keeps_the_measurement_in_the_journal(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    real = atomic.write_parquet

    def full(frame: pd.DataFrame, path: Any) -> None:
        if ".journal" not in str(path):
            raise OSError(
                errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device"
            )
        real(frame, path)

    monkeypatch.setattr(atomic, "write_parquet", full)
    assert harness.run("--fresh") == 2
    err = capsys.readouterr().err
    assert "no space left on the disk" in err and str(harness.out) in err and "Traceback" not in err
    monkeypatch.setattr(atomic, "write_parquet", real)
    # The point measured when the disk was full is in the journal (the one it replaced is kept):
    # the rerun reuses it, and measures nothing.
    assert len(list(harness.journaled().parent.glob(".superseded/32px_2steps_cfg1_b1.*.parquet"))) == 1
    assert harness.run() == 0 and harness.measured() == []
    assert harness.output().is_file()


def test_verdict_of_a_missing_entry_and_a_measured_one(harness: Harness) -> None:
    expected = journal.Expected.of("h100", UUID, measure.Protocol(**PROTOCOL), measure.library_versions())
    assert journal.verdict(harness.journaled(), expected).reuse
    assert journal.verdict(
        harness.journaled(),
        journal.Expected.of("h200", UUID, measure.Protocol(**PROTOCOL), measure.library_versions()),
    ).reason.startswith("measured on GPU kind h100, this job measures h200")
    missing = journal.verdict(harness.out / "absent.parquet", expected)
    assert not missing.reuse and not missing.warning
    # A job on the CPU (no UUID known) still needs measured energy.
    assert journal.verdict(
        harness.journaled(),
        journal.Expected.of("h100", None, measure.Protocol(**PROTOCOL), measure.library_versions()),
    ).reuse
