"""The one L2-normalisation helper: exact values, zero rows, and the checked form's errors."""

from __future__ import annotations

import numpy as np
import pytest

from singerid.errors import DatasetError, TrialsError
from singerid.vectors import l2_normalize


def test_rows_are_scaled_to_unit_norm():
    out = l2_normalize([[3.0, 4.0], [0.0, 2.0]])
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 1.0]])
    assert out.dtype == np.float32
    np.testing.assert_allclose(l2_normalize([5.0, 12.0], dtype=np.float64), [5 / 13, 12 / 13])


def test_unchecked_form_keeps_zero_rows_zero():
    np.testing.assert_array_equal(l2_normalize([[0.0, 0.0], [2.0, 0.0]]), [[0.0, 0.0], [1.0, 0.0]])


def test_checked_form_names_what_is_wrong():
    with pytest.raises(DatasetError, match=r"sys: embeddings of shape \(3, 2\); expected \(2, dim\)"):
        l2_normalize(np.ones((3, 2)), what="sys", rows=2)
    with pytest.raises(DatasetError, match=r"sys: embeddings of shape \(2,\); expected \(n, dim\)"):
        l2_normalize(np.ones(2), what="sys")
    with pytest.raises(TrialsError, match="cohort: 2 embedding"):
        l2_normalize([[0.0, 0.0], [np.nan, 1.0], [1.0, 0.0]], what="cohort", error=TrialsError)
