"""likelihood.py: the two ELBO estimators weight masked positions as documented."""

import math

import numpy as np

import likelihood


def test_noise_estimators_weight_as_documented():
    rng = np.random.default_rng(0)
    clean = np.arange(10, 74)
    noisy, weight = likelihood.noise_block_wise(clean, 16, "exact", rng, mask_id=3)
    for start in range(0, 64, 16):  # k masked, each weighted n/k: the weights of a block sum to n
        assert math.isclose(weight[start : start + 16].sum(), 16)
    assert ((noisy == 3) == (weight > 0)).all() and (noisy[weight == 0] == clean[weight == 0]).all()
    noisy, weight = likelihood.noise_block_wise(clean, 16, "train", rng, mask_id=3)
    for start in range(0, 64, 16):  # one t per block: every masked token weighted 1/t, 1/t ≤ 1/t_min
        block = weight[start : start + 16]
        assert len(set(block[block > 0])) <= 1 and (block <= 1 / likelihood.T_MIN).all()
