"""Exact resume of generator training: a D2NWG run killed with SIGKILL at several points and
rerun ends with the same weights, bit for bit, as a run that never stopped.

One driver subprocess imports the library once (CPU, one thread, deterministic algorithms),
builds a tiny zoo, then forks one child per run: the uninterrupted reference, and a chain of
runs into one folder that each kill themselves (``SIGKILL``, no chance to save anything) at a
chosen step, the next one resuming from what is on disk:

1. mid-VAE (step 5; the last checkpoint is from step 3),
2. right after the VAE stage (its weights saved, the diffusion not started),
3. mid-diffusion (step 7; the last checkpoint is from step 6),
4. to the end.

The children kill themselves at exact points (a patched hook), so the test never races the
training. It compares a hash of every trained tensor (VAE and the EMA denoiser).
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DRIVER = textwrap.dedent(r'''
    import hashlib, json, os, signal, sys
    import torch
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    from datasets_zoo.build import build_zoo
    from generators.d2nwg import train_d2nwg
    import generators.fitting as F

    root = sys.argv[1]
    zoo = build_zoo("digits-tasks", os.path.join(root, "zoo"), size="small", progress=False)
    TINY = dict(vae={"steps": 8, "batch_size": 8, "d_model": 32, "latent_dim": 8},
                condition={"hidden": 16, "contrastive_steps": 2},
                denoiser={"steps": 10, "batch_size": 8, "d_model": 32, "depth": 1, "warmup": 2},
                sampling={"num_inference_steps": 4}, checkpoint_every=3)
    original = F.ExactResume.on_train_batch_start

    def run(out, kill=None):
        pid = os.fork()
        if pid == 0:  # the child trains (and maybe kills itself); it reports through a file
            if kill is not None:
                stage, step = kill
                def hook(self, trainer, pl_module, batch, batch_idx):
                    original(self, trainer, pl_module, batch, batch_idx)
                    if trainer.logger.name == stage and trainer.global_step == step:
                        os.kill(os.getpid(), signal.SIGKILL)
                F.ExactResume.on_train_batch_start = hook
            pipe = train_d2nwg(zoo, out, trainer={"enable_progress_bar": False}, **TINY)
            h = hashlib.sha256()
            for m in (pipe.vae, pipe.denoiser):
                for k, v in sorted(m.state_dict().items()):
                    h.update(k.encode()); h.update(v.detach().cpu().contiguous().numpy().tobytes())
            with open(os.path.join(out, "hash.txt"), "w") as f:
                f.write(h.hexdigest())
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        state = {"killed": killed, "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                 "vae_done": os.path.exists(os.path.join(out, "stages", "vae.safetensors")),
                 "steps": {}}
        for stage in ("vae", "diffusion"):
            ck = os.path.join(out, "checkpoints", stage, "last.ckpt")
            if os.path.exists(ck):
                state["steps"][stage] = int(torch.load(ck, map_location="cpu", weights_only=True)["global_step"])
        h = os.path.join(out, "hash.txt")
        state["hash"] = open(h).read() if os.path.exists(h) else None
        return state

    ref = run(os.path.join(root, "reference"))
    chain = [run(os.path.join(root, "killed"), kill) for kill in
             (("vae", 5), ("diffusion", 0), ("diffusion", 7), None)]
    print("RESULT " + json.dumps({"reference": ref, "chain": chain}))
''')


def test_d2nwg_killed_at_several_points_resumes_bit_for_bit(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    res = json.loads(lines[-1][len("RESULT "):])
    ref, (mid_vae, after_vae, mid_diffusion, final) = res["reference"], res["chain"]
    assert ref["exit"] == 0 and ref["hash"]
    # each kill happened where intended, with work after the last checkpoint lost
    assert mid_vae["killed"] and not mid_vae["vae_done"] and mid_vae["steps"] == {"vae": 3}
    assert after_vae["killed"] and after_vae["vae_done"] and "diffusion" not in after_vae["steps"]
    assert mid_diffusion["killed"] and mid_diffusion["steps"]["diffusion"] == 6
    # ... and the resumed run ends exactly where the uninterrupted one did
    assert final["exit"] == 0 and final["hash"] == ref["hash"]
