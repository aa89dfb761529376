"""The Guard as an option of the Lightning callback: a NaN batch's update is skipped."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import graddoctor as gd

pl = pytest.importorskip("lightning.pytorch")

NAN_BATCH = 3


class LitNet(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
        self.before_nan: list[torch.Tensor] = []
        self.after_nan: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        if batch_idx == NAN_BATCH:
            x = x.clone()
            x[0, 0] = float("nan")
            self.before_nan = [p.detach().clone() for p in self.parameters()]
        if batch_idx == NAN_BATCH + 1:
            self.after_nan = [p.detach().clone() for p in self.parameters()]
        return F.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


@pytest.mark.filterwarnings("ignore")
def test_the_lightning_callback_skips_a_nan_batchs_update(tmp_path):
    from graddoctor.integrations.lightning import GradDoctorCallback

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    guard = gd.Guard(rollback=False)
    callback = GradDoctorCallback(tmp_path / "lit.gdr", guard=guard, run_diagnosis=False)
    model = LitNet()
    trainer = pl.Trainer(max_epochs=1, callbacks=[callback], enable_checkpointing=False, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)  # fmt: skip
    trainer.fit(model, loader)
    assert [(e["step"], e["kind"], e["reason"]) for e in guard.interventions] == [(NAN_BATCH, "guard_skipped", "nonfinite")]
    for before, after in zip(model.before_nan, model.after_nan, strict=True):
        assert torch.equal(before, after)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert gd.open_run(tmp_path / "lit.gdr").events("guard_skipped")
    assert "step" not in vars(trainer.optimizers[0])  # given back when the fit ended
