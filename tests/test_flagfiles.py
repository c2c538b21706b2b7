"""Every flagfile of flags/ parses with the real `transfusion-train` flags; `transfusion-grid`;
README's `transfusion-*` commands use flags that exist."""

from __future__ import annotations

import copy
import glob
import importlib
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "flags", "*.flags"))
)
MODELS = ["resnet50", "inception_v3", "cbr_large_tall", "cbr_large_wide", "cbr_small", "cbr_tiny"]
# The paper's experiments (PAPER.md), each one flagfile.
EXPECTED = (
    [f"{ds}_{m}_{i}" for ds in ("retina", "chexpert", "retina5k") for m in MODELS
     for i in ("random", "imagenet")]
    + [f"{ds}_resnet50_meanvar_bn_{bn}" for ds in ("retina", "chexpert")
       for bn in ("identity", "meanvar", "transfer")]
    + [f"retina_resnet50_transfusion_{u}"
       for u in ("conv1", "block1", "block2", "block3", "block4")]
    + ["retina_resnet50_slim_transfusion", "retina_resnet50_slim_random", "retina_resnet50_gabor"]
    + [f"imagenet_{m}" for m in MODELS if m.startswith("cbr")]
)  # fmt: skip


@pytest.fixture(scope="module")
def train_flags():
    """The global FlagValues with transfusion-train's flags defined (unparsed)."""
    importlib.import_module("transfusion_tf.cli.train")
    return flags.FLAGS


def parse(train_flags, path: str, *extra: str) -> flags.FlagValues:
    """Parses `--flagfile=path` on a private copy of the real flags, as the grid script does."""
    fv = copy.deepcopy(train_flags)
    fv.unparse_flags()
    cwd = os.getcwd()
    os.chdir(ROOT)  # nested --flagfile paths are relative to the repository root
    try:
        fv(["transfusion-train", f"--flagfile={path}", "--seed=0", "--workdir=runs/x", *extra])
    finally:
        os.chdir(cwd)
    return fv


def test_every_paper_experiment_has_a_flagfile():
    names = {os.path.basename(p)[: -len(".flags")] for p in EXPERIMENTS}
    assert not set(EXPECTED) - names, sorted(set(EXPECTED) - names)


@pytest.mark.parametrize("path", EXPERIMENTS)
def test_flagfile_parses_with_the_real_flags(train_flags, path):
    inits = importlib.import_module("transfusion_tf.init.registry").INITS
    models = importlib.import_module("transfusion_tf.models.registry")

    fv = parse(train_flags, path)
    assert fv["model"].present and fv.model in models.MODELS, path
    assert fv["init"].present and fv.init in inits, path
    assert fv["dataset_dir"].present, path
    if fv.init in ("imagenet", "transfusion", "meanvar"):
        assert fv.source_weights or fv.stats_file, path
    if fv.init == "transfusion":
        units = [u.name for u in models.get_units(fv.model)]
        assert fv.transfuse_upto in units, (path, fv.transfuse_upto, units)
    name = os.path.basename(path)
    if name.startswith("retina5k_"):
        assert int(fv.train_examples) == 5000
    if name.startswith("imagenet_"):
        assert fv.loss == "softmax", path  # the source task: a softmax over ImageNet's classes
    if fv.source_weights and fv.source_weights != "imagenet":
        # CBR transfer loads the workdir of the grid's source pretraining run.
        stem = fv.source_weights.split("/")[1]
        assert os.path.exists(os.path.join(ROOT, "flags", f"{stem}.flags")), path


def test_flagfile_holds_only_differences():
    """Experiment files include the shared bases and set at most a few flags of their own."""
    for path in EXPERIMENTS:
        with open(os.path.join(ROOT, path)) as f:
            lines = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
        own = [ln for ln in lines if not ln.startswith("--flagfile=")]
        assert any(ln.startswith("--flagfile=") for ln in lines), path
        assert len(own) <= 5, (path, own)


def test_later_flags_override_the_flagfile(train_flags):
    fv = parse(train_flags, "flags/retina_resnet50_random.flags", "--dataset_dir=/data/eyepacs")
    assert fv.dataset_dir == "/data/eyepacs"
    assert fv.image_size == 587


def test_unknown_flag_in_a_flagfile_is_an_error(train_flags, tmp_path):
    bad = tmp_path / "bad.flags"
    bad.write_text("--flagfile=flags/base/retina.flags\n--learning_rat=0.1\n")
    with pytest.raises(flags.Error, match="learning_rat"):
        parse(train_flags, str(bad))


def _grid(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "transfusion_tf.cli.grid", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


def test_grid_dry_run_prints_every_command():
    proc = _grid(
        "--flagfiles=flags/retina_cbr_small_*.flags,flags/imagenet_cbr_small.flags",
        "--seeds=0,1",
        "--dry_run",
        "--",
        "--dataset_dir=/data/retina",
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    # source pretraining once, first; 3 experiments x 2 seeds; the report.
    assert len(lines) == 1 + 3 * 2 + 1
    assert lines[0].startswith("transfusion-train --flagfile=flags/imagenet_cbr_small.flags")
    assert "--workdir=runs/retina_cbr_small_gabor/seed1 --dataset_dir=/data/retina" in proc.stdout
    assert lines[-1].startswith("transfusion-report '--workdirs=runs/*/seed*'")


def test_grid_runs_skips_finished_and_reports_failures(tmp_path):
    """Runs a fake trainer that finishes seed 0 and fails seed 1."""
    fake = tmp_path / "fake_train.py"
    fake.write_text(
        "import os, sys\n"
        "args = dict(a[2:].split('=', 1) for a in sys.argv[1:])\n"
        "os.makedirs(args['workdir'], exist_ok=True)\n"
        "open(os.path.join(args['workdir'], 'calls'), 'a').write('x')\n"
        "if args['seed'] == '1': sys.exit(3)\n"
        "open(os.path.join(args['workdir'], 'results.json'), 'w').write('{}')\n"
    )
    runs = tmp_path / "runs"
    common = [
        "--flagfiles=flags/retina_cbr_tiny_random.flags",
        "--seeds=0,1",
        f"--runs_dir={runs}",
        f"--train_command={shlex.quote(sys.executable)} {fake}",
        f"--report_command={shlex.quote(sys.executable)} -c pass",
        "--retries=0",
    ]
    for _ in range(2):
        proc = _grid(*common)
        assert proc.returncode == 1
        assert "1 of 2 runs failed" in proc.stderr and "seed1" in proc.stderr
    assert (runs / "retina_cbr_tiny_random" / "seed0" / "calls").read_text() == "x"
    assert (runs / "retina_cbr_tiny_random" / "seed1" / "calls").read_text() == "xx"


def test_grid_bad_inputs(tmp_path):
    proc = _grid("--flagfiles=flags/nothing_*.flags", "--dry_run")
    assert proc.returncode != 0 and "matches no .flags file" in proc.stderr
    proc = _grid("--flagfiles=flags/retina_*.flags", "--seeds=a", "--dry_run")
    assert proc.returncode != 0 and "--seeds must be integers" in proc.stderr
    proc = _grid("--flagfiles=flags/retina_*.flags", "--dry_run", cwd=str(tmp_path))
    assert proc.returncode != 0 and "repository root" in proc.stderr
    assert "Traceback" not in proc.stderr


def _readme_commands() -> list[tuple[str, list[str]]]:
    """(verb, [flag names]) for every `transfusion-<verb>` command in README's code blocks."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S)
    blocks += re.findall(r"`(transfusion-[^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    out = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #")[0]
            for m in re.finditer(r"transfusion-(\w+)((?:\s+--?[\w.=/,*'\"{}<>:$-]*)*)", line):
                # After a lone `--` come the training flags transfusion-grid passes on.
                own = re.split(r"\s--(?:\s|$)", m.group(2))[0]
                names = re.findall(r"--(?:no)?(\w+)", own)
                out.append((m.group(1), names))
    return out


def test_readme_commands_use_existing_flags():
    """Each README `transfusion-<verb> --flag` names a real flag of that CLI module."""
    commands = _readme_commands()
    assert commands, "README shows no transfusion-* command"
    by_verb: dict[str, set[str]] = {}
    for verb, names in commands:
        by_verb.setdefault(verb, set()).update(names)
    # CLI modules define flags on the global FlagValues at import and share names (--seed):
    # import one at a time in one process, deleting its flags before the next import.
    script = (
        "import importlib, json, sys\n"
        "import tensorflow\n"
        "from absl import app, flags, logging\n"
        "out = {}\n"
        "for verb in sys.argv[1:]:\n"
        "    before = set(flags.FLAGS)\n"
        "    importlib.import_module('transfusion_tf.cli.' + verb)\n"
        "    out[verb] = sorted(set(flags.FLAGS) - before)\n"
        "    for name in out[verb]:\n"
        "        delattr(flags.FLAGS, name)\n"
        "print(json.dumps(out))\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", script, *sorted(by_verb)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    defined = json.loads(proc.stdout.strip().splitlines()[-1])
    missing = [
        f"transfusion-{verb} --{name}"
        for verb, names in sorted(by_verb.items())
        for name in sorted(names)
        if name not in set(defined[verb]) | {"flagfile", "helpfull", "help"}
    ]
    assert not missing, missing
