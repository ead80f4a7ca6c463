"""A young city's risk list with a borrowed model, against its own absence-count baseline.

    .venv/bin/python bench/borrowed_model.py [--root DIR] [--lender-pupils 12000]
                                             [--young-pupils 4000] [--young-years 2] [--out FILE]

Makes a deployment of two synthetic cities: ``lender`` (six school years, a model of its own)
and ``young`` (``--young-years`` of history, one of them completed: too few for a model —
``models.status`` says "needs 2 completed school years"). Refreshes the lender (its champion
goes to the deployment's shared registry), then the young city, whose scoring finds no champion
of its own and borrows the lender's (``outputs.risk_scores.model_version`` = ``lender:v<n>``).

Then, on the young city's hidden truth of the listed school year (evaluation only, as
bench/model_quality.py): ROC-AUC and precision in the top 5 % of the published list (the
borrowed model), of the rule baseline (the count of absences so far: what the city would rank
by without a model) and of the oracle, on the same pupils. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--lender-pupils", type=int, default=12_000)
    parser.add_argument("--young-pupils", type=int, default=4_000)
    parser.add_argument("--young-years", type=int, default=2)
    parser.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    os.environ.setdefault("TODA_DEMO", "1")

    from bench.model_quality import published_list_vs_truth
    from toda_platform.deployment import Deployment
    from toda_platform.pseudonym import load_key

    toda = str(Path(sys.executable).parent / "toda")
    with tempfile.TemporaryDirectory() as tmp:
        deployment = Deployment.from_env(Path(args.root or tmp) / "deployment")
        cities = {"lender": ["--pupils", str(args.lender_pupils), "--years", "6", "--seed", "20261"],
                  "young": ["--pupils", str(args.young_pupils), "--years", str(args.young_years),
                            "--seed", "31337", "--elementary-schools", "4", "--junior-high-schools", "2"]}
        env = {**os.environ, "TODA_DEPLOYMENT": str(deployment.root), "TODA_SETTLE_SECONDS": "0"}
        env.pop("TODA_HOME", None)
        for city, options in cities.items():
            paths = deployment.add_city(city)
            if not paths.landing.exists():
                subprocess.run([toda, "generate", "--home", str(paths.home), "--quiet", *options],
                               check=True, cwd=ROOT, env=env)
            load_key(paths.pseudonym_key_file, create=True)
        for city in cities:  # the lender first: its champion is shared before the young city scores
            print(f"refreshing {city} …", flush=True)
            subprocess.run([toda, "deployment", "refresh", "--deployment", str(deployment.root), city],
                           check=True, cwd=ROOT, env=env)
        shared = sorted(p.parent.name for p in deployment.shared_models.glob("*/meta.json"))
        result, *_ = published_list_vs_truth(deployment.paths("young"))
        result["shared_models"] = shared
        print(json.dumps(result, indent=2))
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2), encoding="utf-8")
        if not str(result["model_version"]).startswith("lender:"):
            sys.exit(f"the young city's list is not by the borrowed model: {result['model_version']}")


if __name__ == "__main__":
    main()
