"""Bring your own zoo: a folder of checkpoints plus a metadata table, opened with Zoo.open.

Run: python docs/examples/own_zoo.py [folder]   (under half a minute on a laptop CPU)
docs/guide/own-zoo.md shows this script and the output it printed.
"""
import csv
import sys
from pathlib import Path

import torch
from torch import nn

from datasets_zoo import Zoo, get_task
from wspace.io import save_safetensors

root = Path(sys.argv[1] if len(sys.argv) > 1 else "my_zoo")
task = get_task("digits")  # scikit-learn's 8x8 digits, bundled: x [N, 64], y [N]

# 1. Train a small population the usual way: 4 runs (seed x learning rate), a checkpoint
#    after epochs 1 and 5 of each. Any training code works; only the state_dicts matter.
rows = []
for seed, lr in [(0, 0.01), (1, 0.01), (2, 0.003), (3, 0.003)]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(1, 6):
        for i in range(0, len(task.x_train), 64):
            loss = nn.functional.cross_entropy(model(task.x_train[i:i + 64]), task.y_train[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch in (1, 5):
            with torch.no_grad():
                acc = (model(task.x_test).argmax(1) == task.y_test).float().mean().item()
            file = f"seed{seed}/epoch{epoch}.safetensors"
            save_safetensors(root / file, model.state_dict())  # or torch.save(model.state_dict(), ".../x.pt")
            rows.append({"file": file, "run": f"seed{seed}", "seed": seed, "epoch": epoch, "task": "digits",
                         "metrics.test_acc": round(acc, 4), "metrics.train_loss": round(loss.item(), 4),
                         "hparams.lr": lr})

# 2. The metadata table: one row per checkpoint, found because it is the folder's only CSV.
with open(root / "metadata.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)

# 3. Open it: the format is detected ("plain"), the architecture inferred from the keys and
#    shapes (an MLP with ReLU; pass activation= or spec= otherwise), no weights read yet.
zoo = Zoo.open(root)
print(zoo)
print(zoo.spec.describe(), "|", zoo.spec.num_params, "parameters")
print(zoo.records[0])
final = zoo.filter(epoch=5, test_acc=(0.9, None))  # record fields, then metrics, then hparams
print(len(final), "final checkpoints above 90%:", [r["id"] for r in final.records])
ws = final.weights()  # a WeightSpace: all networks in one batch
logits = ws(task.x_test)  # the 4 networks evaluated in one vectorized call
print("outputs", tuple(logits.shape), "accuracy", [round(a, 4) for a in (logits.argmax(-1) == task.y_test).float().mean(1).tolist()])
train = zoo.dataset("train", target="test_acc", split_by="run", fractions=(0.5, 0.25, 0.25))
print("train split:", len(train), "checkpoints, runs", sorted({zoo.records[i]["run"] for i in train.indices}))
