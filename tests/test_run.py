"""Outpainting driver: real ``mpiexec -n 2..9`` runs against one-rank runs (rank counts that do and
do not divide the units of 2 x 2 rows), kill and resume on another rank count, known context,
halo exchange, bad input. Tiles come from the deterministic stand-in generator of
tests/outpaint_job.py, and from a tiny untrained U-Net through emulator.generate."""
import contextlib
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import outpaint.run
from emulator.config import GenerationSettings
from emulator.geometry import PHASES, known_mask, periodic_crop, tile_origin
from outpaint.plan import Plan, tile_seed
from outpaint.run import CPU_BATCH, automatic_batch, upsample_box
from outpaint.writer import RunState, state_path
from outpaint_job import Crash, instrumented, stand_in
from sims.errors import InputError
from sims.outputs import lock_path

pytestmark = pytest.mark.mpi

MPIEXEC = Path(sys.executable).parent / "mpiexec"
JOB = Path(__file__).with_name("outpaint_job.py")
N, TILE, CORE, SEED, BATCH = 32, 16, 8, 1, 3
ONE_STEP = GenerationSettings("dpmpp-2m", 1)


def mpirun(ranks, *args, abort_script=True):
    """Run tests/outpaint_job.py on ``ranks`` MPI ranks (under ``python -m mpi4py``, which aborts
    every rank on an uncaught exception, unless ``abort_script`` is False); CompletedProcess."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runner = ["-m", "mpi4py"] if abort_script else []
    cmd = [str(MPIEXEC), "-n", str(ranks), sys.executable, *runner, str(JOB), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def write_lr(path, field, box_size, dataset="lr"):
    with h5py.File(path, "w") as f:
        f[dataset] = field
        f.attrs.update(box_size=box_size, redshift=0.5, cosmology=json.dumps({"h": 0.6766}))
    return path


def lognormal(n, seed):
    """A float32 overdensity field (>= -1) of n^3 voxels."""
    rho = np.exp(0.5 * np.random.default_rng(seed).standard_normal((n,) * 3))
    return (rho / rho.mean() - 1).astype(np.float32)


def read_sr(path):
    """The one sample of an outpainted file, (n, n, n), and the file's attributes."""
    with h5py.File(path, "r") as f:
        assert f["sr"].shape[0] == 1 and f["sr"].ndim == 4          # sample axis, as upsample's
        return f["sr"][0], dict(f.attrs)


def logged_seeds(directory):
    seeds = []
    for p in Path(directory).glob("rank*.txt"):
        seeds += [int(s) for s in p.read_text().split()]
    return seeds


def run_in_process(lr, out, tile_generator=stand_in, **kw):
    opts = dict(settings=GenerationSettings("dpmpp-2m", 2), tile=TILE, core=CORE, seed=SEED, batch_size=BATCH,
                tile_generator=tile_generator)
    return upsample_box(None, lr, out, **{**opts, **kw})


@pytest.fixture(scope="module")
def lr_file(tmp_path_factory):
    return write_lr(tmp_path_factory.mktemp("lr") / "lr.h5", lognormal(N, 0), float(N))


@pytest.fixture(scope="module")
def reference(lr_file, tmp_path_factory):
    """An uninterrupted one-rank run (in this process) with the instrumented stand-in."""
    out = tmp_path_factory.mktemp("ref") / "sr.h5"
    run_in_process(lr_file, out, tile_generator=instrumented(stand_in, TILE, CORE))
    return read_sr(out)[0]


N_TILES = (N // CORE) ** 3
ALL_SEEDS = {tile_seed(SEED, i) for i in range(N_TILES)}


def test_two_ranks_equal_one_rank_and_generate_every_tile_once(lr_file, reference, tmp_path):
    out = tmp_path / "sr.h5"
    proc = mpirun(2, "--lr", lr_file, "--out", out, "--log", tmp_path, "--seed", SEED)
    assert proc.returncode == 0, proc.stderr
    sr, attrs = read_sr(out)
    np.testing.assert_allclose(sr, reference, rtol=1e-6, atol=1e-7)
    seeds = logged_seeds(tmp_path)
    assert len(seeds) == len(ALL_SEEDS) and set(seeds) == ALL_SEEDS
    assert attrs["ranks"] == 2 and attrs["samples"] == 1 and attrs["tile"] == TILE and attrs["core"] == CORE
    assert attrs["box_size"] == N and attrs["redshift"] == 0.5 and json.loads(attrs["cosmology"])["h"] == 0.6766
    assert attrs["seed"] == SEED and json.loads(attrs["generation"])["steps"] == 2
    assert "outpaint_job" in attrs["model"]
    assert "created_by" in attrs and not os.path.exists(state_path(out)) and not os.path.exists(lock_path(out))


def test_timings_account_for_every_phase_and_tile(lr_file, tmp_path):
    phases = []
    run_in_process(lr_file, tmp_path / "sr.h5", timings=phases)
    *phases, output = phases
    assert [p["tiles"] for p in phases] == [N_TILES // PHASES] * PHASES
    assert all(p[k] >= 0 for p in phases for k in ("generate", "store", "exchange"))
    assert list(output) == ["output"] and output["output"] > 0


def test_a_gpu_rank_generates_each_phase_in_one_call(lr_file, reference, tmp_path, monkeypatch):
    assert automatic_batch(None, torch.device("cuda", 0)) is None
    assert automatic_batch(None, torch.device("cpu")) == automatic_batch(None, None) == CPU_BATCH
    assert automatic_batch(5, torch.device("cuda", 0)) == 5
    calls = []

    def counting(lr, known, mask, seeds):
        calls.append(len(seeds))
        return stand_in(lr, known, mask, seeds)

    monkeypatch.setattr(outpaint.run, "automatic_batch", lambda batch_size, device: None)
    run_in_process(lr_file, tmp_path / "sr.h5", tile_generator=instrumented(counting, TILE, CORE),
                   batch_size=None)
    assert calls == [N_TILES // PHASES] * PHASES
    np.testing.assert_array_equal(read_sr(tmp_path / "sr.h5")[0], reference)


def recorded_state(out, n=N):
    """The state a killed run of the module's plan left next to ``out``, once every process of
    that run has ended: mpiexec may return while an aborted rank still runs and records tiles,
    but the rank holds the output's lock until it dies (a wait on an event, not on time)."""
    with contextlib.suppress(FileNotFoundError), open(lock_path(out)) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
    return RunState(state_path(out), Plan(n, TILE, CORE))


def phase_recorded(state, phase):
    """True when the state records every tile of ``phase`` (RunState.completed_tiles)."""
    tiles = state.plan.tile_index(state.plan.blocks_in_phase(phase))
    return bool(np.isin(tiles, state.completed_tiles()).all())


def test_kill_then_resume_equals_uninterrupted_without_regenerating(lr_file, reference, tmp_path):
    """Judged by what the state records, never by what a rank logged before MPI_Abort (a rank may
    log a tile it never recorded, or be killed by the other's abort before it logs)."""
    out, log1, log2 = tmp_path / "sr.h5", tmp_path / "run1", tmp_path / "run2"
    log1.mkdir(), log2.mkdir()
    crashed = mpirun(2, "--lr", lr_file, "--out", out, "--log", log1, "--crash-phase", 5, "--crash-call", 2)
    # the exit status, not stderr: mpiexec's abort can cut the traceback off on a loaded machine
    assert crashed.returncode != 0, crashed.stdout + crashed.stderr
    assert not out.exists() and not Path(f"{out}.tmp").exists()
    state = recorded_state(out)
    # a rank reaches phase 5 only after the exchange after phase 3, which needs every tile of
    # phases 0-3 of both ranks recorded; of phases 4 and 5 at most 4 + 3 tiles per rank are
    assert all(phase_recorded(state, p) for p in range(4))
    kept = {tile_seed(SEED, i) for i in state.completed_tiles()}
    assert 2 * 4 * 4 <= len(kept) <= 2 * (4 * 4 + 4 + 3)
    assert kept <= set(logged_seeds(log1))                  # recorded tiles came from this run
    resumed = mpirun(2, "--lr", lr_file, "--out", out, "--log", log2, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    second = logged_seeds(log2)                             # complete: this run was not aborted
    assert sorted(second) == sorted(ALL_SEEDS - kept)       # every unrecorded tile once, no other
    np.testing.assert_allclose(read_sr(out)[0], reference, rtol=1e-6, atol=1e-7)
    assert not os.path.exists(state_path(out))


def test_crash_mid_phase_then_resume_on_other_rank_count(lr_file, reference, tmp_path):
    """Killed in this process (one rank) at the first batch of phase 2, finished by mpiexec -n 2."""
    out, log = tmp_path / "sr.h5", tmp_path / "log"
    log.mkdir()
    with pytest.raises(Crash):
        run_in_process(lr_file, out, tile_generator=instrumented(stand_in, TILE, CORE, log, crash_phase=2))
    assert not out.exists()
    done_before = len(logged_seeds(log))
    assert done_before == 2 * 8                                      # phases 0 and 1
    resumed = mpirun(2, "--lr", lr_file, "--out", out, "--log", log, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    seeds = logged_seeds(log)
    assert len(seeds) == len(ALL_SEEDS) and set(seeds) == ALL_SEEDS
    np.testing.assert_allclose(read_sr(out)[0], reference, rtol=1e-6, atol=1e-7)


BIG = 48                                   # 6 blocks per axis: 3 x 3 units of 2 x 2 rows, 216 tiles
BIG_SEEDS = {tile_seed(SEED, i) for i in range((BIG // CORE) ** 3)}


@pytest.fixture(scope="module")
def big_lr(tmp_path_factory):
    return write_lr(tmp_path_factory.mktemp("big") / "lr.h5", lognormal(BIG, 7), float(BIG))


@pytest.fixture(scope="module")
def big_reference(big_lr, tmp_path_factory):
    """One rank, in this process."""
    out = tmp_path_factory.mktemp("big_ref") / "sr.h5"
    run_in_process(big_lr, out)
    return read_sr(out)[0]


@pytest.mark.parametrize("ranks", [2, 3, 4, 5, 8, 9])
def test_any_rank_count_equals_one_rank_and_generates_every_tile_once(ranks, big_lr, big_reference, tmp_path):
    """2, 4, 5 and 8 ranks split the 9 units unevenly, into pencils of different shapes whose
    neighbours differ along a face; the field is the same to the bit."""
    out = tmp_path / "sr.h5"
    proc = mpirun(ranks, "--lr", big_lr, "--out", out, "--log", tmp_path, "--seed", SEED)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(read_sr(out)[0], big_reference)
    assert sorted(logged_seeds(tmp_path)) == sorted(BIG_SEEDS)


def test_kill_on_three_ranks_then_resume_on_four(big_lr, big_reference, tmp_path):
    """Killed in phase 5 on 3 ranks (x-slabs of 9 tiles per phase: each dies at its 2nd batch),
    finished on 4 ranks, which own other rows: only the unrecorded tiles are generated, once.
    What is recorded depends on timing: a slab receives halos only from its right neighbour (after
    phase 3), so when the first rank dies, it has phases 0-4 and the first batch of 5, its right
    neighbour phases 0-3 at least, the third rank anything up to that."""
    out, log1, log2 = tmp_path / "sr.h5", tmp_path / "run1", tmp_path / "run2"
    log1.mkdir(), log2.mkdir()
    crashed = mpirun(3, "--lr", big_lr, "--out", out, "--log", log1, "--crash-phase", 5, "--crash-call", 2)
    assert crashed.returncode != 0, crashed.stdout + crashed.stderr
    kept = {tile_seed(SEED, i) for i in recorded_state(out, BIG).completed_tiles()}
    assert 5 * 9 + 4 * 9 <= len(kept) <= 5 * 27 + 3 * BATCH and kept <= set(logged_seeds(log1))
    resumed = mpirun(4, "--lr", big_lr, "--out", out, "--log", log2, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(logged_seeds(log2)) == sorted(BIG_SEEDS - kept)
    np.testing.assert_array_equal(read_sr(out)[0], big_reference)
    assert not os.path.exists(state_path(out))


def test_more_ranks_than_units_is_refused_with_the_largest_useful_count(lr_file, tmp_path):
    """32^3 at core 8: 2 x 2 units, so 5 ranks would leave one idle: every rank refuses before
    touching the output."""
    out = tmp_path / "sr.h5"
    proc = mpirun(5, "--lr", lr_file, "--out", out)
    assert proc.returncode != 0
    assert "mpiexec -n: 5 ranks for a box of 4^3 blocks" in proc.stderr and "at most 4 ranks" in proc.stderr
    assert not out.exists() and not os.path.exists(state_path(out))


def test_failure_on_one_rank_stops_every_rank(lr_file, tmp_path):
    """Rank 1 dies in phase 3 while rank 0 will wait for its halo after phase 3: without the
    driver's abort this plain script (no ``-m mpi4py``) would hang until the timeout."""
    out = tmp_path / "sr.h5"
    proc = mpirun(2, "--lr", lr_file, "--out", out, "--crash-phase", 3, "--crash-rank", 1,
                  abort_script=False)
    assert proc.returncode != 0                  # (the abort may cut the forwarded traceback short)
    assert not out.exists()
    assert not phase_recorded(recorded_state(out), 3)                # rank 1 recorded no phase-3 tile


def tile_smoother(lr, known, mask, seeds):
    """Deterministic generator that sees only its LR tile: the mean over the 3^3 neighbours inside
    the tile (clamped at the tile faces), so a core depends on LR voxels up to one cell beyond it."""
    padded = np.pad(lr, ((0, 0), (1, 1), (1, 1), (1, 1)), mode="edge")
    t = lr.shape[-1]
    return sum(padded[:, i:i + t, j:j + t, k:k + t]
               for i in range(3) for j in range(3) for k in range(3)) / 27.0


def test_tile_grid_shifted_by_one_block_gives_the_rolled_field(lr_file, tmp_path):
    """Periodicity: moving the tile grid by one block (LR rolled by +core) changes every tile's
    index and phase but not its contents, so with a generator that depends on the tile contents
    alone the output is the unshifted output rolled, exactly, also for the tiles that wrap."""
    with h5py.File(lr_file, "r") as f:
        lr = f["lr"][...]
    rolled = write_lr(tmp_path / "rolled.h5", np.roll(lr, CORE, axis=(0, 1, 2)), float(N))
    run_in_process(lr_file, tmp_path / "plain.h5", tile_generator=tile_smoother)
    run_in_process(rolled, tmp_path / "shifted.h5", tile_generator=tile_smoother)
    plain, shifted = read_sr(tmp_path / "plain.h5")[0], read_sr(tmp_path / "shifted.h5")[0]
    np.testing.assert_allclose(np.roll(shifted, -CORE, axis=(0, 1, 2)), plain, rtol=1e-6, atol=1e-7)
    # not trivially so: the smoother reads across core faces, so a zero or clamped wrap would differ
    assert np.abs(plain - lr).max() > 0.1


def test_known_context_is_never_overwritten_and_only_cores_are_kept(lr_file, tmp_path):
    plan, calls = Plan(N, TILE, CORE), []

    def recording(lr, known, mask, seeds):
        out = stand_in(lr, known, mask, seeds)
        calls.append((list(seeds), known.copy(), mask.copy(), out))
        return out

    out = tmp_path / "sr.h5"
    run_in_process(lr_file, out, tile_generator=recording)
    sr = read_sr(out)[0]
    index_of = {tile_seed(SEED, i): i for i in range(plan.n_tiles)}
    h, c = plan.halo, plan.core
    seen = 0
    for seeds, known, mask, tiles in calls:
        for s, k, m, t in zip(seeds, known, mask, tiles):
            block = np.unravel_index(index_of[s], (plan.blocks,) * 3)
            region = periodic_crop(sr, tile_origin(block, TILE, CORE), TILE)
            assert any(np.array_equal(m, known_mask(TILE, CORE, p)) for p in range(PHASES))
            np.testing.assert_array_equal(region[m], k[m])             # context kept as given
            np.testing.assert_array_equal(region[h:h + c, h:h + c, h:h + c], t[h:h + c, h:h + c, h:h + c])
            assert not np.array_equal(region[m], t[m]) or not m.any()  # the stand-in's halo was dropped
            seen += 1
    assert seen == plan.n_tiles


def test_bad_inputs_are_input_errors_and_leave_no_output(lr_file, tmp_path):
    out = tmp_path / "sr.h5"
    cases = [
        (write_lr(tmp_path / "flat.h5", np.zeros((32, 32, 16), np.float32), 32.0), "cubic"),
        (write_lr(tmp_path / "nan.h5", np.where(lognormal(N, 1) > 2, np.nan, 0).astype(np.float32), 32.0), "NaN"),
        (write_lr(tmp_path / "neg.h5", np.full((N,) * 3, -2, np.float32), 32.0), "overdensity"),
        (write_lr(tmp_path / "odd.h5", lognormal(40, 1), 40.0), "multiple of 2\\*core"),
        (tmp_path / "missing.h5", "does not exist"),
    ]
    for lr, message in cases:
        with pytest.raises(InputError, match=message):
            run_in_process(lr, out)
        assert not out.exists() and not os.path.exists(state_path(out))
    out.write_bytes(b"old")
    with pytest.raises(InputError, match="already exists") as err:
        run_in_process(lr_file, out)
    assert err.value.source == str(out)


def test_interrupted_state_needs_resume_or_force_and_the_same_settings(lr_file, reference, tmp_path):
    out = tmp_path / "sr.h5"
    with pytest.raises(Crash):
        run_in_process(lr_file, out, tile_generator=instrumented(stand_in, TILE, CORE, crash_phase=1))
    with pytest.raises(InputError, match="interrupted run"):
        run_in_process(lr_file, out, tile_generator=instrumented(stand_in, TILE, CORE))
    with pytest.raises(InputError, match="other settings.*seed"):
        run_in_process(lr_file, out, tile_generator=instrumented(stand_in, TILE, CORE), resume=True, seed=2)
    run_in_process(lr_file, out, tile_generator=instrumented(stand_in, TILE, CORE), force=True)
    np.testing.assert_allclose(read_sr(out)[0], reference, rtol=1e-6, atol=1e-7)


def test_a_second_run_on_the_same_output_is_refused_while_the_first_runs(lr_file, reference, tmp_path):
    """While a run holds its output's lock, a second run on that output is refused whatever its
    flags, and the first run's result stays whole."""
    out, refused = tmp_path / "sr.h5", []

    def interfering(lr, known, mask, seeds):
        if not refused:                      # first call: the first run has its lock and state
            for flags in ({}, {"resume": True}, {"force": True}):
                with pytest.raises(InputError, match="another run is writing it") as err:
                    run_in_process(lr_file, out, **flags)
                refused.append(err.value.source)
        return stand_in(lr, known, mask, seeds)

    run_in_process(lr_file, out, tile_generator=interfering)
    assert refused == [str(out)] * 3
    np.testing.assert_allclose(read_sr(out)[0], reference, rtol=1e-6, atol=1e-7)
    assert not os.path.exists(lock_path(out)) and not os.path.exists(state_path(out))


def test_a_lock_file_without_a_live_holder_does_not_block_resume(lr_file, reference, tmp_path):
    """kill -9 leaves OUT.lock behind, but the kernel dropped its flock with the process."""
    out = tmp_path / "sr.h5"
    with pytest.raises(Crash):
        run_in_process(lr_file, out, tile_generator=instrumented(stand_in, TILE, CORE, crash_phase=1))
    Path(lock_path(out)).touch()
    run_in_process(lr_file, out, tile_generator=instrumented(stand_in, TILE, CORE), resume=True)
    np.testing.assert_allclose(read_sr(out)[0], reference, rtol=1e-6, atol=1e-7)
    assert not os.path.exists(lock_path(out))


# --- a real (tiny, untrained) model through emulator.generate.generate_tiles -----------------

SPACING = 2.0                                                        # HR grid spacing [Mpc/h]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """Inference checkpoint of an untrained 'tiny' U-Net for tile 16, core 8, HR spacing 2 and LR
    spacing 4 Mpc/h (normalisation scale small so that untrained outputs stay finite)."""
    import torch

    from emulator import checkpoint
    from emulator.config import TrainConfig
    from emulator.normalization import Normalization
    torch.manual_seed(0)
    config = TrainConfig(preset="tiny", tile=TILE, core=CORE)
    meta = checkpoint.ModelMeta(config=config, spacing=SPACING, lr_spacing=2 * SPACING,
                                normalization=Normalization(shift=0.0, scale=0.02))
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    checkpoint.save_inference_model(path, meta, checkpoint.build_net(config))
    return path


@pytest.fixture(scope="module")
def tiny_case(tiny_model, tmp_path_factory):
    """A 32^3 LR box (4 blocks per axis: 64 tiles) and its one-rank outpainting with the tiny model."""
    directory = tmp_path_factory.mktemp("tiny")
    lr = write_lr(directory / "lr.h5", lognormal(N, 5), N * SPACING)
    upsample_box(tiny_model, lr, directory / "one.h5", GenerationSettings("dpmpp-2m", 2), seed=SEED, batch_size=4)
    return lr, read_sr(directory / "one.h5")


@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_tiny_model_any_rank_count_equals_one_rank(ranks, tiny_model, tiny_case, tmp_path):
    lr, (one, attrs) = tiny_case
    out = tmp_path / "sr.h5"
    proc = mpirun(ranks, "--lr", lr, "--out", out, "--model", tiny_model, "--steps", 2, "--batch", 4)
    assert proc.returncode == 0, proc.stderr
    assert np.isfinite(one).all() and one.shape == (N,) * 3 and one.std() > 0
    np.testing.assert_allclose(read_sr(out)[0], one, rtol=1e-4, atol=1e-5)
    assert attrs["model"] == os.path.abspath(tiny_model) and json.loads(attrs["generation"])["sampler"] == "dpmpp-2m"


def test_tiny_model_eight_ranks_equal_one_rank(tiny_model, tmp_path):
    """48^3 (216 tiles, 9 units): 8 oversubscribed ranks, one of them with two units."""
    lr = write_lr(tmp_path / "lr.h5", lognormal(BIG, 6), BIG * SPACING)
    one, eight = tmp_path / "one.h5", tmp_path / "eight.h5"
    upsample_box(tiny_model, lr, one, ONE_STEP, seed=SEED, batch_size=8)
    proc = mpirun(8, "--lr", lr, "--out", eight, "--model", tiny_model, "--steps", 1, "--batch", 8)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(read_sr(eight)[0], read_sr(one)[0], rtol=1e-4, atol=1e-5)


def test_model_grid_spacing_and_tile_are_checked(tiny_model, tmp_path):
    out = tmp_path / "sr.h5"
    bad = write_lr(tmp_path / "bad.h5", lognormal(16, 5), 16 * 1.5 * SPACING)
    with pytest.raises(InputError, match="spacing") as err:
        upsample_box(tiny_model, bad, out, ONE_STEP)
    assert "bad.h5" in err.value.source
    with pytest.raises(InputError, match="trained on tile 16"):
        upsample_box(tiny_model, bad, out, ONE_STEP, tile=20, core=8)
    coarse = write_lr(tmp_path / "coarse.h5", lognormal(8, 5), 8 * 2 * SPACING)  # the model's LR grid
    upsample_box(tiny_model, coarse, out, ONE_STEP, batch_size=8)
    sr, attrs = read_sr(out)
    assert sr.shape == (16,) * 3 and np.isfinite(sr).all() and attrs["box_size"] == 16 * SPACING
