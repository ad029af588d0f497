"""Run profiles shared by the notebooks, the CLI and ``make reproduce``.

``smoke``  seconds per notebook: tiny synthetic data, tiny images (CI, ``make test``)
``cpu``    the default reproduction on a laptop: default synthetic data, 64x64 faces; the trial and subject
           splits as one grouped split each
``cpu-cv`` ``cpu`` with the trial and subject splits cross-validated (3 folds: every video and every person
           tested once) and an arm with the paper's augmentation: the longer reproduction (README)
``gpu``    paper scale: DEAP-shaped synthetic data (or the real DEAP), 224x224, VMamba-T size
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Profile:
    name: str
    synth_scale: str  # msvssm.data.synth.SCALES key
    image_size: int  # model input (pixels, square)
    crop_size: int  # stored face-crop size written by preprocessing
    model_size: str  # nano / tiny / small / base
    batch_size: int
    epochs: int
    bench_batch: int  # batch for quick speed checks inside notebooks
    device: str  # where notebooks score whole splits and time models (training follows the TrainConfig's)
    jobs: int  # runs make reproduce trains at once (msvssm.train.plan); 0: one per GPU torch sees
    threads: int  # CPU threads of each training run (0: torch's default); on a CPU an input of the run's key
    folds: int  # grouped cross-validation of the trial and subject splits: K folds (notebook 10); 0: one split each
    recipe: str = ""  # the training recipe (msvssm.train.config.PROFILE_DEFAULTS) when it is another profile's

    @property
    def train_profile(self) -> str:
        """The profile whose training recipe this one uses (cpu-cv: cpu's, so its runs are cpu's runs)."""
        return self.recipe or self.name

    def to_dict(self) -> dict:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    # folds: 0 = the trial and subject splits as one grouped split each (a fifth of the videos, or 2-3 people,
    # tested); K = K-fold cross-validation, every video (trial) and every person (subject) tested once. smoke: one
    # split, as cpu (tests/test_notebooks.py also runs notebook 10 with 2 folds); cpu: one split, which keeps the
    # default reproduction near 40 minutes on 2 cores; cpu-cv: 3 folds (12 participants, 4 a fold) and the
    # paper-augmentation arm, the cpu recipe otherwise (the same runs, cached once); gpu: 5 (folds = 22
    # participants is leave-one-subject-out).
    "smoke": Profile("smoke", "smoke", 32, 64, "nano", 8, 1, 2, "cpu", jobs=1, threads=1, folds=0),
    # smoke and cpu pin one thread a run: a run's key and numbers are then the same on any machine and with any
    # --jobs (on a CPU the thread count is a run input). cpu: 15 epochs (docs/training_study.md); two runs of one
    # thread at once: 1.16x the speed of one run of two threads on 2 cores (benchmarks/bench_sweep.py).
    "cpu": Profile("cpu", "default", 64, 128, "nano", 32, 15, 8, "cpu", jobs=2, threads=1, folds=0),
    "gpu": Profile("gpu", "deap", 224, 224, "tiny", 64, 300, 64, "cuda", jobs=0, threads=0, folds=5),
}
# cpu-cv is cpu with the folds, derived from it so that the two cannot drift apart
PROFILES["cpu-cv"] = replace(PROFILES["cpu"], name="cpu-cv", folds=3, recipe="cpu")


def get_profile(name: str, **overrides) -> Profile:
    """The named profile, with optional field overrides."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return replace(PROFILES[name], **overrides)
