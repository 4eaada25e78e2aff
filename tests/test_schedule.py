"""The MaskGIT schedule: timesteps, temperatures, the cosine schedule and the masked count."""

import torch
from torch.testing import assert_close

from editmgt_core.sampler.schedule import cosine_schedule, mask_len, temperatures, timesteps


def test_schedules():
    assert_close(temperatures((2, 0), 12), torch.linspace(2, 0, 12))
    assert_close(temperatures(1.5, 5), torch.linspace(1.5, 0.01, 5))
    assert temperatures(1.0, 3).dtype == torch.float32
    assert cosine_schedule(0.0) == 1.0 and abs(cosine_schedule(1.0)) < 1e-12
    assert_close(cosine_schedule(torch.tensor([0.5])), torch.tensor([0.5**0.5]))
    assert timesteps(4).tolist() == [3, 2, 1, 0]
    assert mask_len(0, 12, 4096) == 4060 and mask_len(10, 12, 4096) == 534 and mask_len(11, 12, 4096) == 0
