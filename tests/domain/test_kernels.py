"""Known answers of the domain kernels: next-fit grouping, layout positions, lattice neighbours, claims."""

import numpy as np
import pytest

from glacgrid.domain import _kernels, group_layout


def test_next_fit_known_answer():
    group, C, G = group_layout(np.array([3, 4, 2, 5, 0, 1]), 6)
    assert C == 6 and G == 8
    np.testing.assert_array_equal(group, [0, 1, 1, 2, 2, 2])


def test_next_fit_raises_C_to_largest_glacier():
    group, C, G = group_layout(np.array([3, 4, 2, 5, 0, 1]), 4)
    assert C == 5
    np.testing.assert_array_equal(group, [0, 1, 2, 3, 3, 4])


def test_G_is_a_multiple_of_8():
    group, C, G = group_layout(np.ones(19, dtype=int), 9)
    assert C == 9 and G == 16  # 9 glaciers per group -> 16 slots
    np.testing.assert_array_equal(np.bincount(group), [9, 9, 1])


def test_layout_positions_known_answer():
    n = np.array([3, 4, 2, 5, 0, 1])
    group, C, G = group_layout(n, 6)
    first, slot = _kernels.layout_positions(n, group, C, G)
    np.testing.assert_array_equal(first, [0, 6, 10, 12, 17, 17])
    np.testing.assert_array_equal(slot, [0, 8, 9, 16, 17, 18])
    # no glacier crosses a chunk boundary
    assert np.all((first // C) == ((first + np.maximum(n, 1) - 1) // C))


def test_group_layout_rejects_bad_input():
    with pytest.raises(ValueError):
        group_layout(np.array([1, 2]), 0)


def test_lattice_neighbours_known_answer():
    # an L of 4 pixels: (0,0) (0,1) (1,0) in zone 0, (0,2) in zone 1 (another lattice: no neighbour)
    zone = np.array([0, 0, 0, 1])
    iy = np.array([0, 0, 1, 0])
    ix = np.array([0, 1, 0, 2])
    out = _kernels.lattice_neighbours(np.zeros(4, int), zone, iy, ix, np.arange(4))
    np.testing.assert_array_equal(out, [[-1, 1, -1, 2], [0, -1, -1, -1], [-1, -1, 0, -1], [-1, -1, -1, -1]])


def test_edge_neighbours_replicate_the_edge():
    z = np.arange(6.0).reshape(2, 3)
    out = _kernels.edge_neighbours(z, np.array([0, 1]), np.array([0, 2]))
    np.testing.assert_array_equal(out, [[0, 1, 0, 3], [4, 5, 2, 5]])  # W, E, N, S


def test_first_claims_keeps_lowest_order():
    keep = _kernels.first_claims(np.array([0, 0, 0, 1]), np.array([5, 6, 5, 5]), np.array([1, 1, 1, 1]))
    np.testing.assert_array_equal(keep, [True, True, False, True])
