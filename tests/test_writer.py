"""The outpainting state and the output file (outpaint.writer), without MPI."""

import h5py
import numpy as np
import pytest

from outpaint.plan import Plan
from outpaint.writer import RunState, state_path, write_output
from sims.errors import InputError

N, TILE, CORE = 32, 16, 8
SETTINGS = {"n": N, "seed": 1}


def core_of(plan, block):
    """A recognisable core for ``block``: its global tile index everywhere."""
    return np.full((plan.core,) * 3, float(plan.tile_index(np.array([block]))[0]), dtype=np.float32)


def fill_row(state, row, count):
    """Store the first ``count`` tiles of ``row`` in its schedule order, one at a time."""
    blocks = state.plan.row_blocks(row)[:count]
    for block in blocks:
        state.store(row, block[None], core_of(state.plan, block)[None])


def test_stored_tiles_are_recorded_in_schedule_order_and_read_back(tmp_path):
    plan = Plan(N, TILE, CORE)
    state = RunState.create(state_path(tmp_path / "sr.h5"), plan, SETTINGS)
    assert state.open_row(0) == 0 and state.row(0).shape == (CORE, CORE, N)
    fill_row(state, 0, 3)
    assert state.done(0) == 3
    np.testing.assert_array_equal(state.completed_tiles(), np.sort(plan.tile_index(plan.row_blocks(0)[:3])))
    for block in plan.row_blocks(0)[:3]:
        z = slice(block[2] * CORE, (block[2] + 1) * CORE)
        np.testing.assert_array_equal(state.row(0)[:, :, z], core_of(plan, block))
    assert not state.complete()
    with pytest.raises(RuntimeError, match="incomplete"):
        next(state.planes())


def test_a_corrupted_tile_and_everything_after_it_in_the_row_are_generated_again(tmp_path):
    plan = Plan(N, TILE, CORE)
    state = RunState.create(state_path(tmp_path / "sr.h5"), plan, SETTINGS)
    state.open_row(1)
    fill_row(state, 1, 4)
    third = plan.row_blocks(1)[2]
    data = np.load(state._row(1, "npy"), mmap_mode="r+")
    data[0, 0, third[2] * CORE] += 1.0                   # one flipped voxel in the third core
    data.flush()
    del data
    assert state.open_row(1) == 2 and state.done(1) == 2


def test_a_state_of_other_settings_is_refused(tmp_path):
    directory = state_path(tmp_path / "sr.h5")
    RunState.create(directory, Plan(N, TILE, CORE), SETTINGS)
    RunState.open(directory, Plan(N, TILE, CORE), SETTINGS)
    with pytest.raises(InputError, match="seed: 1 then, 2 now"):
        RunState.open(directory, Plan(N, TILE, CORE), {**SETTINGS, "seed": 2})


def test_a_complete_state_streams_into_the_one_output_file(tmp_path):
    plan = Plan(N, TILE, CORE)
    out = tmp_path / "sr.h5"
    state = RunState.create(state_path(out), plan, SETTINGS)
    expected = np.empty((N,) * 3, dtype=np.float32)
    for row in range(plan.blocks ** 2):
        state.open_row(row)
        fill_row(state, row, plan.blocks)
        for block in plan.row_blocks(row):
            expected[tuple(slice(b * CORE, (b + 1) * CORE) for b in block)] = core_of(plan, block)
    assert state.complete()
    write_output(out, (1, N, N, N), state.planes(), {"seed": 1})
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["sr"][0], expected)
        assert f.attrs["seed"] == 1 and "created_by" in f.attrs
