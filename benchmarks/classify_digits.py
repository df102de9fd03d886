"""Classifier accuracy on real data (scikit-learn's digits), CPU, against baselines in the same run.

  * from scratch: `kubik classify` split -> train (narrow ResNet-18, 32 px, --epochs) -> test
    top-1 on the held-out test split, vs an RBF SVM (scikit-learn SVC, default settings) on the
    raw 64 pixels of the same train/test split. Goal: >= 98 % test top-1 within a few minutes.
  * long tail: digits with 120 down to 3 training images per class (ratio 40), balanced 30 per
    class test set; macro top-1 of the logit-adjusted loss vs plain cross-entropy, same seed,
    same schedule, for --seeds seeds.

    python benchmarks/classify_digits.py [--epochs 15] [--seeds 2]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from kubik_core.classify.classmap import ClassMap  # noqa: E402
from kubik_core.classify.data import ManifestDataset  # noqa: E402
from kubik_core.classify.demo import DEMO_AUGMENT, DEMO_MODEL_KWARGS, write_digit_images  # noqa: E402
from kubik_core.classify.evaluate import evaluate_dataset  # noqa: E402
from kubik_core.classify.manifest import read_dataset, write_jsonl  # noqa: E402
from kubik_core.classify.predict import Classifier  # noqa: E402
from kubik_core.classify.split import split_samples, write_split  # noqa: E402
from kubik_core.classify.train import TrainConfig, train  # noqa: E402


def _config(data, out, epochs, **overrides):
    return TrainConfig(data=str(data), out=str(out), architecture="resnet18", model_kwargs=DEMO_MODEL_KWARGS,
                       img_size=32, epochs=epochs, batch_size=64, lr=3e-3, augment=DEMO_AUGMENT,
                       device="cpu", show_progress=False, **overrides)


def from_scratch(work: Path, epochs: int) -> None:
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC

    images = write_digit_images(work / "digits")
    split = split_samples(read_dataset(images), 0.1, 0.1, seed=0)
    split_dir = write_split(split, work / "split")
    started = time.perf_counter()
    result = train(_config(split_dir, work / "run", epochs))
    seconds = time.perf_counter() - started
    classifier = Classifier.load(result.model_path)
    test = split.splits["test"]
    ours = evaluate_dataset(classifier.model, ManifestDataset(test, split.class_map, classifier.transform()),
                            split.class_map, classifier.device).metrics.top1

    digits = load_digits()
    index = lambda rows: [int(Path(s.path).stem) for s in rows]  # noqa: E731  file name = row index
    tr, te = index(split.splits["train"] + split.splits["val"]), index(test)
    svm = SVC().fit(digits.data[tr], digits.target[tr])
    base = float((svm.predict(digits.data[te]) == digits.target[te]).mean())
    print(f"classify digits from scratch, test top-1 ({len(te)} images, {epochs} epochs, {seconds:.0f} s "
          f"training) on cpu: ours {ours:.4f}, baseline RBF-SVM on pixels {base:.4f}, ratio {ours / base:.3f}",
          flush=True)


def long_tail(work: Path, epochs: int, seeds: int) -> None:
    from sklearn.datasets import load_digits

    targets = load_digits().target
    images = write_digit_images(work / "digits")
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        test_idx = {int(i) for c in range(10) for i in rng.choice(np.flatnonzero(targets == c), 30, replace=False)}
        train_idx = []
        for c in range(10):
            pool = [i for i in np.flatnonzero(targets == c) if i not in test_idx]
            keep = max(2, int(round(120 * 40 ** (-c / 9))))
            train_idx += rng.choice(pool, keep, replace=False).tolist()
        samples = {int(Path(s.path).stem): s for s in read_dataset(images)}
        split = work / f"lt{seed}"
        write_jsonl(split / "train.jsonl", [samples[i] for i in sorted(train_idx)])
        write_jsonl(split / "val.jsonl", [samples[i] for i in sorted(test_idx)])
        ClassMap(tuple(str(d) for d in range(10))).save(split / "classes.json")
        macro = {}
        for loss in ("ce", "logit_adjusted"):
            result = train(_config(split, work / f"lt{seed}_{loss}", epochs, loss=loss, label_smoothing=0.0,
                                   seed=seed))
            macro[loss] = result.history[-1]["val_macro_top1"]
        print(f"classify long-tailed digits (120..3 per class, seed {seed}), balanced test macro top-1 on cpu: "
              f"ours logit-adjusted {macro['logit_adjusted']:.4f}, baseline cross-entropy {macro['ce']:.4f}, "
              f"ratio {macro['logit_adjusted'] / macro['ce']:.2f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--tail-epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        from_scratch(Path(tmp), args.epochs)
        long_tail(Path(tmp), args.tail_epochs, args.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
