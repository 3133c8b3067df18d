"""``judge_runs``: the judged comparison of two runs, written to ``results.json``, and its text
table (what ``dualgap llm judge`` prints)."""

from __future__ import annotations

from pathlib import Path

from ...commands._io import dumps
from .answers import ADVBENCH_SOURCE, load_advbench, parse_side, run_answers
from .client import EndpointSettings
from .judging import judge_answers
from .templates import ASPECTS, TEMPLATE_VERSION

__all__ = ["default_output_dir", "judge_runs", "format_results"]


def default_output_dir(spec_a: str, spec_b: str, prompt_set: str) -> Path:
    """``RUN_A/judge/<prompt set>-vs-<B's name>`` (``@reference`` as ``-reference``)."""
    dir_a, _ = parse_side(spec_a)
    dir_b, which_b = parse_side(spec_b)
    name_b = dir_b.resolve().name + ("-reference" if which_b == "reference" else "")
    return dir_a / "judge" / f"{prompt_set}-vs-{name_b}"


def judge_runs(spec_a: str, spec_b: str, settings: EndpointSettings,
               output_dir: str | Path | None = None, cache_path: str | Path | None = None,
               prompt_set: str = "eval", advbench_source: str = ADVBENCH_SOURCE,
               advbench_revision: str | None = None, max_prompts: int | None = None,
               samples_per_prompt: int = 1, aspects: tuple[str, ...] = ASPECTS,
               max_parse_retries: int = 2, progress: bool = True) -> dict:
    """Judge run A (``DIR`` or ``DIR@reference``) against run B on ``prompt_set`` and write
    ``OUTPUT_DIR/results.json`` (the judgment cache defaults to ``OUTPUT_DIR/cache.jsonl``)."""
    settings.api_key()  # a missing key fails here, before any answer is generated
    unknown = [a for a in aspects if a not in ASPECTS]
    if unknown or not aspects:
        raise ValueError(f"--aspects: {list(aspects)!r} must be a non-empty subset of "
                         f"{list(ASPECTS)}")
    if max_prompts is not None and max_prompts < 1:
        raise ValueError(f"--max-prompts: must be >= 1, got {max_prompts}")
    out = Path(output_dir) if output_dir is not None else default_output_dir(spec_a, spec_b,
                                                                              prompt_set)
    prompts = None
    if prompt_set == "advbench":
        prompts = load_advbench(advbench_source, advbench_revision,
                                100 if max_prompts is None else max_prompts)
    a = run_answers(spec_a, prompt_set, prompts, samples_per_prompt, progress)
    b = run_answers(spec_b, prompt_set, prompts, samples_per_prompt, progress)
    if a.prompts != b.prompts:
        raise ValueError(f"runs: {spec_a!r} and {spec_b!r} answered different prompts "
                         f"({len(a.prompts)} and {len(b.prompts)}); evaluate both with the "
                         "same data.test_split and evaluation.num_prompts")
    n = len(a.prompts) if max_prompts is None or prompt_set == "advbench" else min(
        max_prompts, len(a.prompts))
    out.mkdir(parents=True, exist_ok=True)
    summary = judge_answers(a.prompts[:n], a.samples[:n], b.samples[:n], settings,
                            cache_path if cache_path is not None else out / "cache.jsonl",
                            samples_per_prompt, tuple(aspects), max_parse_retries, progress)
    results = {
        "run_a": str(a.directory), "run_b": str(b.directory), "label_a": a.label,
        "label_b": b.label, "method_a": a.method, "method_b": b.method,
        "threshold_a": a.threshold, "threshold_b": b.threshold, "side_a": a.which,
        "side_b": b.which, "prompt_set": prompt_set,
        "judge": {"base_url": settings.base_url, "model": settings.model,
                  "temperature": settings.temperature, "template_version": TEMPLATE_VERSION},
        **summary}
    tmp = out / "results.json.tmp"
    tmp.write_text(dumps(results, indent=1))
    tmp.replace(out / "results.json")
    results["output_dir"] = str(out)
    return results


def _fmt(r: dict) -> str:
    if r["rate"] is None:
        return "   n/a"
    return f"{r['rate']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]"


def format_results(results: dict) -> str:
    """A plain-text table of :func:`judge_runs`'s results."""
    j = results["judge"]
    lines = [f"{results['label_a']} vs {results['label_b']} on {results['prompt_set']}: "
             f"{results['num_questions']} questions x {results['samples_per_prompt']} answers, "
             f"judge {j['model']} ({j['template_version']}), both orders"]
    for aspect, e in results["aspects"].items():
        lines.append(f"{aspect:<12} A wins {_fmt(e['win'])}  ties {_fmt(e['tie'])}  "
                     f"B wins {_fmt(e['loss'])}")
        lines.append(f"{'':<12} orders disagree {_fmt(e['disagreement'])}, first position "
                     f"wins {e['first_position_wins']}, judged {e['judged']}, unjudged "
                     f"{e['unjudged']} ({e['win']['interval']} 95% intervals)")
    c = results["calls"]
    lines.append(f"calls: {c['calls']} ({c['from_cache']} from the cache, {c['sent']} sent, "
                 f"{c['http_requests']} HTTP requests); unparseable replies "
                 f"{c['unparseable_replies']} (retried), never parsed {c['never_parsed']}")
    return "\n".join(lines)
