"""Command line: ``python -m basket_insights {generate,replay,summary} ...``.

Run ``python -m basket_insights --help`` for the commands and their options.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import date

from basket_insights.config import default_lake_url

#: The benchmarks' PostgreSQL database (create it first: ``createdb -h 127.0.0.1 -U postgres basket_bench``).
BENCH_POSTGRES = "host=127.0.0.1 port=5432 user=postgres dbname=basket_bench"


def _iso_date(text: str) -> str:
    try:
        date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from exc
    return text


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _lake(args: argparse.Namespace):
    from basket_insights.lake import Lake

    return Lake(args.lake, conn_id=args.conn_id)


def cmd_generate(args: argparse.Namespace) -> dict:
    from basket_insights.synth import generate

    return generate(
        _lake(args), users=args.users, days=args.days, end_date=args.end_date, seed=args.seed, catalog_dir=args.catalog
    )


def cmd_replay(args: argparse.Namespace) -> dict:
    from basket_insights.replay import replay

    return replay(args.source, _lake(args), end_date=args.end_date)


def cmd_summary(args: argparse.Namespace) -> dict:
    """Where the outputs of ``ds`` are, and the headline counts."""
    lake = _lake(args)
    out: dict = {"lake": lake.url, "ds": args.ds, "tables": {}}
    ingested = quarantined = 0
    for zone, table in [
        ("bronze", "products"),
        ("bronze", "orders"),
        ("bronze", "order_products"),
        ("silver", "user_features"),
    ]:
        manifests = lake.manifests(zone, table, up_to=args.ds)
        dates = list(manifests)
        rows = sum(m.rows for m in manifests.values())
        if zone == "bronze":
            ingested += rows
        out["tables"][f"{zone}/{table}"] = {
            "partitions": len(dates),
            "rows": rows if zone == "bronze" else (manifests[dates[-1]].rows if dates else 0),
            "latest": lake.display(lake.partition(zone, table, dates[-1])) if dates else None,
        }
    for table in ("departments", "aisles", "products", "orders", "order_products"):
        quarantined += sum(m.rows for m in lake.manifests("quarantine", table, up_to=args.ds).values())
    out["rows_ingested"] = ingested
    out["rows_quarantined"] = quarantined
    out["users_with_features"] = out["tables"]["silver/user_features"]["rows"]
    out["validation"] = lake.display(lake.table_path("validation", "orders"))
    gold = ("customer_segments", "product_clusters", "association_rules", "recommendations", "evaluation", "buy_again")
    for table in gold:
        manifest = lake.manifest("gold", table, args.ds)
        out["tables"][f"gold/{table}"] = {
            "rows": manifest.rows if manifest else 0,
            "partition": lake.display(lake.partition("gold", table, args.ds)) if manifest else None,
        }
    if lake.manifest("gold", "segment_profiles", args.ds):
        profiles = lake.read_table("gold", "segment_profiles", dates=[args.ds]).to_pandas()
        out["segments"] = dict(zip(profiles["segment_name"], profiles["size"].astype(int), strict=True))
    if lake.manifest("gold", "report", args.ds):
        out["report"] = lake.display(lake.partition("gold", "report", args.ds) / "index.html")
    if lake.manifest("gold", "evaluation", args.ds):
        evaluation = lake.read_table("gold", "evaluation", dates=[args.ds]).to_pandas()
        out["hit_rate_at_10"] = dict(zip(evaluation["method"], evaluation["hit_rate"].round(4), strict=True))
    if lake.manifest("gold", "buy_again_evaluation", args.ds):
        evaluation = lake.read_table("gold", "buy_again_evaluation", dates=[args.ds]).to_pandas()
        out["buy_again_mean_f1"] = dict(zip(evaluation["method"], evaluation["mean_f1"].round(4), strict=True))
    return out


def cmd_bench(args: argparse.Namespace) -> dict:
    from basket_insights.bench import bench_tasks, format_table

    rows = bench_tasks(args.lake, args.ds, args.tasks.split(","), runs=args.runs)
    print(format_table(rows), file=sys.stderr)
    return {"lake": args.lake, "ds": args.ds, "tasks": rows}


def cmd_bench_publish(args: argparse.Namespace) -> dict:
    from basket_insights.bench import bench_publish
    from basket_insights.publish import Warehouse

    targets = {}
    if args.postgres:
        targets["postgresql (COPY)"] = Warehouse("postgres", args.postgres, "postgresql")
    if args.sqlite:
        targets["sqlite (executemany)"] = Warehouse.sqlite(args.sqlite)
    rows = bench_publish(targets, users=args.users, runs=args.runs)
    for row in rows:
        print(f"| {row['database']} | {row['rows']:,} | {row['seconds']:.1f} | {row['runs']} |", file=sys.stderr)
    return {"publish": rows}


def cmd_bench_api(args: argparse.Namespace) -> dict:
    from basket_insights.bench import bench_api_reads
    from basket_insights.publish import Warehouse

    rows = bench_api_reads(Warehouse("postgres", args.postgres, "postgresql"), requests=args.requests, runs=args.runs)
    for row in rows:
        print(f"| {row['reads']} | {row['ms_per_request']:.2f} | {', '.join(map(str, row['runs']))} |", file=sys.stderr)
    return {"api_reads": rows}


def cmd_bench_pipeline(args: argparse.Namespace) -> dict:
    from basket_insights.bench import bench_pipeline, format_pipeline, update_docs
    from basket_insights.config import REPO_ROOT

    result = bench_pipeline(
        users=args.users,
        days=args.days,
        seed=args.seed,
        cache=args.cache,
        baseline_timeout=args.baseline_timeout,
        user_shards=args.user_shards,
        dask_workers=args.dask_workers,
    )
    command = "python -m basket_insights " + " ".join(sys.argv[1:])
    section = format_pipeline(result, command)
    print(section, file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if not args.no_docs:
        update_docs(section, REPO_ROOT / "docs" / "benchmarks.md")
    return result


def cmd_bench_scaling(args: argparse.Namespace) -> dict:
    from basket_insights.bench import plot_scaling

    results = [json.load(open(path)) for path in args.results]
    plot_scaling(results, args.out)
    return {r["users"]: {"total_seconds": r["total_seconds"], "max_peak_rss_mb": r["max_peak_rss_mb"]} for r in results}


def cmd_stack(args: argparse.Namespace) -> dict:
    from pathlib import Path

    from basket_insights import stack

    native = stack.NativeStack(Path(args.dir).resolve(), api_port=args.api_port, s3_port=args.s3_port, pg=args.pg,
                               redis_url=args.redis_url, name=args.name)  # fmt: skip
    if args.action == "up":
        return stack.stack_up(native)
    if args.action == "down":
        return {"stopped": stack.stack_down(native)}
    if args.action == "init":
        return stack.init_stack()
    return stack.stack_status(native)


def cmd_recommend(args: argparse.Namespace) -> dict:
    """One user's recent purchases and recommendations with reasons."""
    lake = _lake(args)
    recs = lake.read_table("gold", "recommendations", dates=[args.ds]).to_pandas()
    mine = recs[recs["user_id"] == args.user_id].sort_values("rank")
    if mine.empty:
        raise ValueError(f"user {args.user_id} has no recommendations on {args.ds}")
    from basket_insights.features import load_history
    from basket_insights.ingest import product_names

    history = load_history(lake, args.ds).lines
    history = history[history["user_id"] == args.user_id]
    last = history["order_number"].max()
    names = product_names(lake, args.ds)
    recent = history[history["order_number"] > last - 3]
    print(f"user {args.user_id} on {args.ds}: recent purchases (last 3 orders)")
    for number, group in recent.groupby("order_number"):
        print(f"  order #{number}: " + ", ".join(str(names.get(p, p)) for p in group["product_id"]))
    print("recommendations:")
    for row in mine.itertuples():
        print(f"  {row.rank:2d}. {row.product_name}  [{row.source}, score {row.score:.3f}]  {row.reason}")
    out = {"user_id": args.user_id, "ds": args.ds, "recommendations": len(mine)}
    if lake.manifest("gold", "buy_again", args.ds):
        import pyarrow.compute as pc

        again = lake.read_table("gold", "buy_again", dates=[args.ds])
        again = again.filter(pc.equal(again["user_id"], args.user_id)).to_pandas().sort_values("rank")
        print("buy again (the set expected to score the best F1 on the next order):")
        for row in again.itertuples():
            if row.rank > 0:
                print(f"  {row.rank:2d}. {row.product_name}  [probability {row.probability:.2f}]  {row.reason}")
        for row in again[again["rank"] == 0].itertuples():
            print(f"  None{' (in the set)' if row.chosen else ''}: {row.reason}")
        out["buy_again"] = int((again["rank"] > 0).sum())
    return out


def cmd_evaluate(args: argparse.Namespace) -> dict:
    lake = _lake(args)
    table = lake.read_table("gold", "evaluation", dates=[args.ds]).to_pandas()
    print(table.drop(columns=["ds"]).to_string(index=False), file=sys.stderr)
    return {"ds": args.ds, "evaluation": table.drop(columns=["ds"]).to_dict("records")}


def cmd_bench_quality(args: argparse.Namespace) -> list:
    from basket_insights.bench_quality import bench_quality, format_quality, quality_records
    from basket_insights.config import REPO_ROOT

    catalog = args.catalog
    instacart = REPO_ROOT.parent / "shared" / "instacart"
    if catalog is None and args.generated and (instacart / "products.csv").is_file():
        catalog = str(instacart)
    quality = bench_quality(
        args.source,
        args.generated,
        end_date=args.end_date,
        seed=args.seed,
        catalog=catalog,
        lake_url=args.lake,
        bootstrap=args.bootstrap,
    )
    print(format_quality(quality), file=sys.stderr)
    records = quality_records(quality)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=2)
    return records


def cmd_bench_rules(args: argparse.Namespace) -> list:
    from basket_insights.bench import RULE_TOOLS, bench_rules, format_rules_table

    tools = tuple(args.tools.split(",")) if args.tools else RULE_TOOLS
    rows = bench_rules(args.baskets, args.items, args.min_support, args.max_len, args.runs, args.timeout, tools)
    print(format_rules_table(rows), file=sys.stderr)
    if args.json:
        keys = ("tool", "seconds", "peak_mb", "n_itemsets", "agrees", "error")
        with open(args.json, "w") as f:
            json.dump([{k: r.get(k) for k in keys} for r in rows], f, indent=2)
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m basket_insights", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def lake_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--lake", default=default_lake_url(), help="lake base URL (default: %(default)s)")
        p.add_argument("--conn-id", default=None, help="Airflow connection of an s3:// lake")

    g = sub.add_parser("generate", help="write a synthetic Instacart-shaped daily feed into the landing zone")
    lake_options(g)
    g.add_argument("--users", type=_positive, default=2000)
    g.add_argument("--days", type=_positive, default=60)
    g.add_argument("--end-date", type=_iso_date, required=True)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--catalog", default=None, help="folder with the real products/aisles/departments.csv")
    g.set_defaults(func=cmd_generate)

    r = sub.add_parser("replay", help="write a Kaggle Instacart snapshot as daily landing drops")
    lake_options(r)
    r.add_argument("--source", required=True, help="folder with orders.csv, order_products__*.csv, catalog")
    r.add_argument("--end-date", type=_iso_date, required=True)
    r.set_defaults(func=cmd_replay)

    s = sub.add_parser("summary", help="where the outputs of a date are, with headline counts")
    lake_options(s)
    s.add_argument("--ds", type=_iso_date, required=True)
    s.set_defaults(func=cmd_summary)

    rc = sub.add_parser("recommend", help="one user's recent purchases and recommendations with reasons")
    lake_options(rc)
    rc.add_argument("--ds", type=_iso_date, required=True)
    rc.add_argument("--user-id", type=int, required=True)
    rc.set_defaults(func=cmd_recommend)

    ev = sub.add_parser("evaluate", help="the offline evaluation of a date against the baselines")
    lake_options(ev)
    ev.add_argument("--ds", type=_iso_date, required=True)
    ev.set_defaults(func=cmd_evaluate)

    st = sub.add_parser("stack", help="the production topology natively: up, down, status; init (the one-off job)")
    st.add_argument("action", choices=["up", "down", "status", "init"])
    st.add_argument("--dir", default=".stack", help="state, logs and data of the stack (default: %(default)s)")
    st.add_argument("--api-port", type=_positive, default=8080)
    st.add_argument("--s3-port", type=_positive, default=8333)
    st.add_argument("--pg", default="host=127.0.0.1 port=5432 user=postgres", help="libpq conninfo of the server")
    st.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    st.add_argument("--name", default="basket", help="prefix of the databases <name>_airflow, <name>_warehouse")
    st.set_defaults(func=cmd_stack)

    b = sub.add_parser("bench", help="benchmarks")
    bench_sub = b.add_subparsers(dest="bench", required=True)
    bt = bench_sub.add_parser("tasks", help="time pipeline steps on an existing lake (fresh process per run)")
    lake_options(bt)
    bt.add_argument("--ds", type=_iso_date, required=True)
    bt.add_argument("--runs", type=_positive, default=3)
    bt.add_argument("--tasks", default="segment_customers,cluster_products,link_preferences")
    bt.set_defaults(func=cmd_bench)
    br = bench_sub.add_parser("rules", help="frequent itemsets: ours against pyfim and mlxtend on one workload")
    br.add_argument("--baskets", type=_positive, default=3_214_874)
    br.add_argument("--items", type=_positive, default=49_677)
    br.add_argument("--min-support", type=float, default=0.001)
    br.add_argument("--max-len", type=int, default=3, choices=[1, 2, 3])
    br.add_argument("--runs", type=_positive, default=3)
    br.add_argument("--timeout", type=float, default=300.0, help="seconds per tool run")
    br.add_argument("--tools", default=None, help="comma-separated subset of the tools")
    br.add_argument("--json", default=None, help="also write the table as JSON here")
    br.set_defaults(func=cmd_bench_rules)
    bl = bench_sub.add_parser(
        "pipeline", help="the whole daily run through Airflow at scale, and the notebook baseline"
    )
    bl.add_argument("--users", type=_positive, default=206_209)
    bl.add_argument("--days", type=_positive, default=365)
    bl.add_argument("--seed", type=int, default=1)
    bl.add_argument("--cache", default=".bench", help="where the generated feed and its history are kept")
    bl.add_argument("--baseline-timeout", type=float, default=900.0, help="seconds before the baseline is stopped")
    bl.add_argument("--json", default=None, help="write the result here: total_seconds, baseline_seconds, tasks")
    bl.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    bl.add_argument("--user-shards", type=_positive, default=1, help="BASKET_USER_SHARDS of the daily run")
    bl.add_argument(
        "--dask-workers", type=int, default=0, help="run the shards on a local Dask cluster of this many workers"
    )
    bl.set_defaults(func=cmd_bench_pipeline)
    bq = bench_sub.add_parser(
        "quality", help="the evaluation of a real (Kaggle layout) or generated feed beside implicit's ALS and kNN"
    )
    where = bq.add_mutually_exclusive_group(required=True)
    where.add_argument("--source", default=None, help="folder in the Kaggle layout (orders.csv, order_products__*)")
    where.add_argument("--generated", type=_positive, default=None, help="generate this many customers over a year")
    bq.add_argument(
        "--catalog",
        default=None,
        help="products/aisles/departments.csv (default: --source's own or the nearest folder above it; "
        "for --generated ../shared/instacart when it is there, else the synthetic catalog)",
    )
    bq.add_argument("--end-date", type=_iso_date, default="2026-05-31")
    bq.add_argument("--lake", default=None, help="an empty lake to fill and keep (default: a temporary one)")
    bq.add_argument("--seed", type=int, default=1)
    bq.add_argument("--bootstrap", type=_positive, default=1000, help="resamples of the intervals")
    bq.add_argument("--json", default=None, help="write method, recall, hit_rate, ndcg, coverage, recall_ci, users")
    bq.set_defaults(func=cmd_bench_quality)
    bs = bench_sub.add_parser("scaling", help="plot time and memory per task from several `bench pipeline --json`")
    bs.add_argument("results", nargs="+", help="JSON files written by bench pipeline --json")
    bs.add_argument("--out", default="docs/images/scaling.png")
    bs.set_defaults(func=cmd_bench_scaling)
    bp = bench_sub.add_parser("publish", help="publish N×10 recommendation rows to PostgreSQL (COPY) and SQLite")
    bp.add_argument("--users", type=_positive, default=200_000, help="users × 10 rows (default: 2 million rows)")
    bp.add_argument("--runs", type=_positive, default=3)
    bp.add_argument(
        "--postgres",
        default=BENCH_POSTGRES,
        help="libpq conninfo of an existing, disposable database ('' to skip)",
    )
    bp.add_argument("--sqlite", default="/tmp/basket_bench.sqlite", help="SQLite file ('' to skip)")
    bp.set_defaults(func=cmd_bench_publish)
    ba = bench_sub.add_parser("api", help="the plugin API's PostgreSQL reads: a connection per read against pooled")
    ba.add_argument("--requests", type=_positive, default=300, help="requests per run and mode")
    ba.add_argument("--runs", type=_positive, default=5)
    ba.add_argument(
        "--postgres",
        default=BENCH_POSTGRES,
        help="libpq conninfo of an existing, disposable database",
    )
    ba.set_defaults(func=cmd_bench_api)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        result = args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
