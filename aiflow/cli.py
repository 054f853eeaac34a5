"""`aiflow`: the console script. Stages for dvc.yaml, the Prefect flows and deployments, and the everyday
commands around them. It sits above both layers it drives: domains/ and flows/ never import it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from domains.common import paths
from domains.common.distributed import RankFailed
from domains.common.dvc import dvc
from domains.common.errors import PipelineError

EXAMPLES = """\
examples:
  aiflow run                         # dvc repro every domain in params.yaml, then list the reports
  aiflow run fraud                   # only the finance-fraud pipeline
  aiflow run recsys                  # only the recommender (ranking models vs popularity, rating models)
  aiflow run sentiment               # NLP sentiment (TF-IDF, NBSVM, a fastText-style torch model)
  aiflow run medical                 # medical imaging (pixel baselines vs a ResNet-style CNN, Grad-CAM)
  aiflow run defects                 # defect detection from good images only (patch Gaussian vs a segmenter)
  aiflow check-params                # validate params.yaml against every domain's typed model
  aiflow stage validate fraud        # one stage (what dvc.yaml calls; prefer `dvc repro validate@fraud`)
  aiflow reports                     # where each domain's report is, with gate verdict and decision
  aiflow flow fraud                  # the same pipeline as a Prefect flow run (stages run through DVC)
  aiflow serve                       # serve the nightly deployments (PREFECT_API_URL set)
  aiflow deploy --pool local         # or register them on a work pool, for `prefect worker start --pool local`
  aiflow score fraud new_tx.csv      # score new transactions with the champion: gate, drift, predictions
  aiflow score fraud new.csv --history last_month.csv --model v2 --out scores/today
  aiflow score fraud year.csv --chunk-rows 250000   # 250k rows at a time: memory stays flat (input in time order)
  aiflow export fraud --int8         # the champion as ONNX (parity proven on its test split), plus int8
  aiflow serve-model fraud --port 8000   # the champion over HTTP on 127.0.0.1: POST /predict, /health, /docs
  aiflow champion list fraud         # promotions and rollbacks of the fraud champion
  aiflow champion rollback fraud     # restore the previous champion
  dvc exp run -S fraud.train.lr=0.003   # an experiment with one param changed
  dvc metrics diff                   # metrics of the workspace vs HEAD

Point a domain at your own data in params.yaml, e.g.
  fraud:
    data: {source: ulb, path: /data/creditcard.csv}
  recsys:
    data: {source: ml-100k, path: /data/ml-100k}
  sentiment:
    data: {source: aclimdb, path: /data/aclImdb_v1.tar.gz}
  medical:
    data: {source: medmnist, path: /data/pneumoniamnist.npz, classes: [normal, pneumonia]}
  defects:
    data: {source: mvtec, path: /data/mvtec/bottle}
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiflow",
        description="Applied-AI reference pipelines: gate, train, evaluate and report per domain.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stage = sub.add_parser("stage", help="run one stage of one domain (called by dvc.yaml)")
    stage.add_argument("stage", choices=paths.STAGES)
    stage.add_argument("domain")

    run = sub.add_parser("run", help="dvc repro the given domains (default: all) and list their reports")
    run.add_argument("domains", nargs="*")
    run.add_argument("--force", action="store_true", help="re-run stages even when DVC says nothing changed")

    sub.add_parser("check-params", help="validate params.yaml and exit")
    sub.add_parser("reports", help="list report paths with gate verdict and decision")

    flow = sub.add_parser("flow", help="run the Prefect flow for the given domains (default: all), now")
    flow.add_argument("domains", nargs="*")
    flow.add_argument("--force", action="store_true")
    flow.add_argument("--no-promote", action="store_true", help="record the decision but do not promote")
    flow.add_argument("--push", action="store_true", help="dvc push the outputs after a successful run")

    sub.add_parser("serve", help="serve the scheduled deployments from this process (needs PREFECT_API_URL)")
    deploy = sub.add_parser("deploy", help="register the deployments on a Prefect work pool")
    deploy.add_argument("--pool", required=True, help="work pool name (e.g. one made by `prefect work-pool create`)")

    score = sub.add_parser(
        "score",
        help="score new data with a trained model, through the data gate and a drift check",
        description="Read INPUT in one of the domain's formats (labels optional), pass it through the training gate "
        "(minus label checks) and the drift check against the model's training data, then write "
        "predictions (each row naming the model version, its DVC hash and the input's hash), a manifest "
        "and an HTML report. A blocked batch writes nothing.",
    )
    score.add_argument("domain")
    score.add_argument("input", type=Path, help="file or folder to score (only read)")
    score.add_argument("--source", help="input format (default: the training source's format)")
    score.add_argument("--out", type=Path, help="output folder (default: data/<domain>/scores/<input name>)")
    score.add_argument("--model", default="champion", help="champion (default), candidate, or v<N> from the registry")
    score.add_argument("--csv", action="store_true", help="predictions as CSV instead of Parquet")
    score.add_argument(
        "--history", type=Path, help="fraud: earlier labelled transactions the window features look back on"
    )
    score.add_argument("--explain", action="store_true", help="medical: Grad-CAM maps of each image")
    score.add_argument(
        "--chunk-rows",
        type=int,
        help="rows read, gated and scored at a time (default: score.chunk_rows in params.yaml, 100000; "
        "0: the whole batch at once); fraud needs its input in time order to score in chunks",
    )

    export = sub.add_parser(
        "export",
        help="export a trained model to ONNX, written only when proven equal to the evaluated model",
        description="Convert every model of the version (torch through torch.onnx.export, scikit-learn through "
        "skl2onnx), score the whole test split it was evaluated on in onnxruntime and write the .onnx "
        "files, the pre-processing they need, the threshold, class names and a manifest with parity "
        "figures, only if every model is within its tolerance. --int8 adds quantized models kept when "
        "the primary metric moves by at most one point.",
    )
    export.add_argument("domain")
    export.add_argument("--model", default="champion", help="champion (default), candidate, or v<N> from the registry")
    export.add_argument("--int8", action="store_true", help="also int8 models, with size, metric change and latency")
    export.add_argument("--out", type=Path, help="output folder (default: data/<domain>/exports/<version>)")

    serve_model = sub.add_parser(
        "serve-model",
        help="serve the champion over HTTP (POST /predict, GET /health, /metadata, /docs)",
        description="Load the domain's champion (verified by its DVC hash) and answer POST /predict with what\n"
        "`aiflow score` would write for the same items: each request passes the scoring gate's row-level\n"
        "checks (a bad one gets a 422 naming the field and the check), requests arriving together are\n"
        "scored together, and a newly promoted champion is picked up without a restart. GET /health,\n"
        "/metadata and /docs (OpenAPI) describe it.",
        epilog="example:\n  aiflow serve-model fraud --port 8000 --history last_37_days.csv\n"
        '  curl -s localhost:8000/predict -H \'content-type: application/json\' -d \'{"items": [{"transaction_id": 1, '
        '"tx_datetime": "2018-06-01T10:00:00", "customer_id": 5, "terminal_id": 9, "tx_amount": 42.5}]}\'',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve_model.add_argument("domain")
    serve_model.add_argument(
        "--runtime",
        default="torch",
        choices=["torch", "onnx", "int8"],
        help="torch: the trained model as evaluated (default); onnx/int8: its ONNX export",
    )
    serve_model.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    serve_model.add_argument("--port", type=int, default=8000)
    serve_model.add_argument("--no-batching", action="store_true", help="score each request alone")
    serve_model.add_argument(
        "--window-ms", type=float, default=10.0, help="most a batch waits for the requests it expects (default 10 ms)"
    )
    serve_model.add_argument("--max-batch", type=int, default=64, help="requests per scoring call (default 64)")
    serve_model.add_argument("--max-body-mb", type=float, default=8.0, help="larger bodies get a 413 (default 8)")
    serve_model.add_argument("--threads", type=int, default=1, help="torch threads for scoring (default 1)")
    serve_model.add_argument(
        "--history", type=Path, help="fraud: earlier labelled transactions, the past of every request's windows"
    )

    champ = sub.add_parser("champion", help="list, promote or roll back a domain's champion model")
    champ.add_argument("action", choices=["list", "promote", "rollback"])
    champ.add_argument("domain")
    return parser


def _domains(root: Path, requested: list[str]) -> list[str]:
    from domains.common.registry import configured_domains, load_params

    configured = configured_domains(root)
    for name in requested:
        if name not in configured:
            raise PipelineError(f"domain '{name}' has no section in params.yaml; configured: {', '.join(configured)}")
    chosen = requested or configured
    for name in chosen:
        load_params(root, name)  # every section valid before any work
    return chosen


def _reports(root: Path, domains: list[str]) -> None:
    for name in domains:
        html = paths.report_html(root, name)
        decision_file = paths.decision_file(root, name)
        if not html.is_file() or not decision_file.is_file():
            print(f"{name}: no report yet (run `aiflow run {name}`)")
            continue
        decision = json.loads(decision_file.read_text())
        print(
            f"{name}: {html.relative_to(root)}  (gate {decision['gate_verdict']}, {decision['decision']}: {decision['reason']})"
        )


def _champion(root: Path, action: str, domain: str) -> None:
    from domains.common import champion

    _domains(root, [domain])
    if action == "promote":
        promoted = champion.promote(root, domain)
        print(f"{domain}: champion is now v{promoted['version']} ({promoted['model']}): {promoted['reason']}")
    elif action == "rollback":
        restored = champion.rollback(root, domain)
        print(f"{domain}: champion is now " + (f"v{restored['version']} ({restored['model']})" if restored else "none"))
    else:
        registry = champion.read_registry(root, domain)
        for event in registry["events"]:
            if event["event"] == "promote":
                print(f"{event['promoted_at']}  promote  v{event['version']}  {event['model']}  {event['reason']}")
            else:
                print(f"{event['at']}  rollback v{event['version']} -> v{event['restored_version']}")
        current = registry["champion"]
        print(f"champion: {'v' + str(current['version']) + ' ' + current['model'] if current else 'none'}")


def _score(root: Path, args: argparse.Namespace) -> None:
    from domains.common.contract import ScoreOptions
    from domains.common.scoring import ScoreRequest, score

    _domains(root, [args.domain])
    manifest = score(
        root,
        ScoreRequest(
            args.domain,
            args.input,
            args.source,
            args.out,
            args.model,
            args.csv,
            ScoreOptions(history=args.history, explain=args.explain),
            args.chunk_rows,
        ),
    )
    counts, drift = manifest["counts"], manifest["drift"]
    print(
        f"{args.domain}: scored {counts['scored']} of {counts['rows_in']} rows with {manifest['model']['version']} "
        f"({manifest['model']['name']}); {counts['quarantined']} quarantined; gate {manifest['gate']['verdict']}, "
        f"drift {drift['verdict']}"
    )
    for line in [*manifest["gate"]["warnings"], *drift["reasons"]]:
        print(f"  {line}")
    out = Path(manifest["out"])
    shown = out.relative_to(root) if out.is_relative_to(root) else out
    print(f"{shown / manifest['predictions']}\n{shown / 'report.html'}")


def _export(root: Path, args: argparse.Namespace) -> None:
    from domains.common.export import ExportRequest, export

    _domains(root, [args.domain])
    manifest = export(root, ExportRequest(args.domain, args.model, args.int8, args.out))
    model = manifest["model"]
    print(
        f"{args.domain}: exported {model['version']} (DVC {model['dvc_md5']}), parity on {manifest['test_items']} "
        "test items:"
    )
    for name, figures in manifest["models"].items():
        parity = figures["parity"]
        line = f"  {name}: max |p_onnx - p_ref| {parity['max_abs_diff']:.2g} (<= {parity['tolerance']:g}), " + (
            f"top-{parity['top_k']} lists identical but {parity['near_threshold_flipped']} at a tie"
            if "top_k" in parity
            else f"{parity['near_threshold']} near the threshold"
        )
        if "map" in parity:
            line += (
                f", max |map_onnx - map_ref| {parity['map']['max_abs_diff']:.2g} (<= {parity['map']['tolerance']:g})"
            )
        q = figures.get("int8")
        if q and "size_ratio" in q:
            line += (
                f"; int8 {q['size_ratio']:.2f}x size, {q['metric']} {q['change_points']:+.2f} points, "
                f"{q['speedup_batch_1']:.2f}x at batch 1" + ("" if q["exported"] else f" ({q['reason']})")
            )
        elif q:
            line += f"; {q['reason']}"
        print(line)
    for name, reason in manifest["not_converted"].items():
        print(f"  {name}: not exported: {reason}")
    out = Path(manifest["out"])
    print(out.relative_to(root) if out.is_relative_to(root) else out)


def _serve_model(root: Path, args: argparse.Namespace) -> None:
    from aiflow.serve import ServeConfig, serve

    _domains(root, [args.domain])
    serve(
        root,
        ServeConfig(
            args.domain,
            args.runtime,
            args.host,
            args.port,
            not args.no_batching,
            args.window_ms,
            args.max_batch,
            int(args.max_body_mb * 1024 * 1024),
            threads=args.threads,
            history=args.history,
        ),
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    root = paths.project_root()
    try:
        if args.command == "stage":
            from domains.common.stages import run_stage

            run_stage(args.stage, args.domain, root)
        elif args.command == "check-params":
            for name in _domains(root, []):
                print(f"{name}: ok")
        elif args.command == "reports":
            from domains.common.registry import configured_domains

            _reports(root, configured_domains(root))
        elif args.command == "run":
            chosen = _domains(root, args.domains)
            targets = [f"report@{name}" for name in chosen]
            repro = ["repro", *(["--force"] if args.force else []), *targets]
            print("$ dvc " + " ".join(repro), flush=True)
            code = dvc(root, *repro).returncode
            if code != 0:
                return code
            print("\nReports:")
            _reports(root, chosen)
        elif args.command == "flow":
            chosen = _domains(root, args.domains)
            os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
            from flows.pipeline import all_domains_flow

            state = all_domains_flow(
                domains=chosen, force=args.force, promote=not args.no_promote, push=args.push, return_state=True
            )
            if state.is_failed():
                print(f"error: flow run failed: {state.message}", file=sys.stderr)
                return 1
            _reports(root, chosen)
        elif args.command == "serve":
            from flows.deployments import serve_deployments

            serve_deployments()
        elif args.command == "deploy":
            from flows.deployments import deploy_to_pool

            for deployment_id in deploy_to_pool(args.pool):
                print(f"deployment {deployment_id} on pool {args.pool}")
        elif args.command == "score":
            _score(root, args)
        elif args.command == "export":
            _export(root, args)
        elif args.command == "serve-model":
            _serve_model(root, args)
        elif args.command == "champion":
            _champion(root, args.action, args.domain)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except RankFailed as err:  # a crash, not bad input: `crashed:`, which the flows retry (see flows/pipeline.py)
        print(f"crashed: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
