"""What evaluate.py prints and records: the side-by-side table, and the headline figures it
writes into each evaluated model's manifest (`--record`)."""

from __future__ import annotations

import json
from pathlib import Path


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def table_rows(results: dict) -> list[tuple[str, str]]:
    m, c, v, d = results["mbpp"], results["continuation"], results["validation"], results["decoding"]["all"]
    f, r = results["infilling"], results["repair"]
    q, inj = r["quixbugs"], r["injected"]
    mbpp_line = f["mbpp_line"]
    return [
        ("objective", results["model"]["objective"]),
        ("MBPP pass@1 (greedy)", f"{m['passed']}/{m['total']} = {_pct(m['pass_at_1'])}"),
        ("MBPP candidates syntax-valid", _pct(m["syntax_valid_rate"])),
        (
            "continuation syntax-valid",
            f"{_pct(c['syntax_valid_rate'])} (true text {_pct(c['reference_syntax_valid_rate'])})",
        ),
        ("continuation next-line exact", _pct(c["first_line_exact_match_rate"])),
        ("infill single line, exact", f"{_pct(f['single_line']['exact_match_rate'])} of {f['single_line']['cases']}"),
        ("infill 2-4 lines, exact", f"{_pct(f['multi_line']['exact_match_rate'])} of {f['multi_line']['cases']}"),
        (
            "infill MBPP line, tests pass",
            f"{_pct(mbpp_line['pass_rate'])} of {mbpp_line['cases']} (exact {_pct(mbpp_line['exact_match_rate'])})",
        ),
        ("repair injected edits, restored", f"{_pct(inj['restored_rate'])} of {inj['cases']}"),
        (
            "repair: edit distance before → after",
            f"{inj['mean_distance_before']:.2f} → {inj['mean_distance_after']:.2f}",
        ),
        ("repair: clean blocks changed", _pct(inj["false_edit_rate"])),
        (
            "QuixBugs repaired (tests pass)",
            "n/a"
            if q is None
            else f"{_pct(q['repaired_rate'])} of {q['programs']} (changed {_pct(q['changed_rate'])})",
        ),
        ("val bits/byte (ELBO bound | AR NLL)", f"{v['exact']['bits_per_byte']:.3f}"),
        (
            "val nats/token (ELBO bound | AR NLL)",
            f"{v['exact']['nats_per_token']:.3f} ± {v['exact']['sem_over_windows'] or 0:.3f}",
        ),
        ("tokens per step", "n/a" if d.get("tokens_per_step") is None else f"{d['tokens_per_step']:.2f}"),
        (
            "forward passes per generation",
            "n/a" if "forwards_per_generation" not in d else f"{d['forwards_per_generation']:.1f}",
        ),
        ("wall time", f"{results['wall_time_s']['total']:.0f} s"),
    ]


def summary(results: dict) -> dict:
    """The headline figures of one model, for its manifest."""
    f, inj, q = results["infilling"], results["repair"]["injected"], results["repair"]["quixbugs"]
    return {
        "objective": results["model"]["objective"],
        "mbpp_pass_at_1": results["mbpp"]["pass_at_1"],
        "mbpp_tasks": results["mbpp"]["total"],
        "mbpp_syntax_valid_rate": results["mbpp"]["syntax_valid_rate"],
        "continuation_syntax_valid_rate": results["continuation"]["syntax_valid_rate"],
        "infill_single_line_exact": f["single_line"]["exact_match_rate"],
        "infill_multi_line_exact": f["multi_line"]["exact_match_rate"],
        "infill_mbpp_line_pass_rate": f["mbpp_line"]["pass_rate"],
        "repair_restored_rate": inj["restored_rate"],
        "repair_false_edit_rate": inj["false_edit_rate"],
        "quixbugs_repaired_rate": None if q is None else q["repaired_rate"],
        "validation_bits_per_byte": results["validation"]["exact"]["bits_per_byte"],
        "validation_measure": "NLL" if results["model"]["objective"] == "ar" else "ELBO (upper bound on NLL)",
        "tokens_per_step": results["decoding"]["all"].get("tokens_per_step"),
    }


def record_in_manifests(all_results: list[dict]) -> None:
    """Every evaluated model's manifest gets the headline figures of all of them, side by side."""
    figures = {results["model"]["name"]: summary(results) for results in all_results}
    for results in all_results:
        path = Path(results["model"]["directory"]) / "manifest.json"
        manifest = json.loads(path.read_text())
        manifest["evaluation"] = {
            "harness": "models/python/evaluate.py",
            "settings": results["settings"],
            "models": figures,
        }
        path.write_text(json.dumps(manifest, indent=2) + "\n")


def format_table(all_results: list[dict]) -> str:
    """One column per model, side by side."""
    columns = [dict(table_rows(results)) for results in all_results]
    names = [results["model"]["name"] for results in all_results]
    labels = [label for label, _ in table_rows(all_results[0])]
    widths = [max(len(label) for label in labels)] + [
        max(len(name), *(len(col[label]) for label in labels)) for name, col in zip(names, columns, strict=True)
    ]
    line = lambda cells: "  ".join(f"{cell:<{w}}" for cell, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    s = all_results[0]["settings"]
    header = [
        f"threshold {s['threshold']}, block {s['block_size']}, max tokens {s['max_tokens']}, MBPP limit {s['limit']}, "
        f"sandbox network: {all_results[0]['sandbox']['network_isolation'] or 'NOT isolated'}",
        line(["", *names]),
    ]
    notes = ["Denoiser: the exact ELBO is an upper bound on the NLL; the twin's figure is its NLL."]
    for results in all_results:
        info = results["model"]
        if not info["sha256_matches_manifest"]:
            notes.append(f"warning: {info['name']}: denoiser.onnx does not match its manifest's sha256")
        notes += [f"warning: {w}" for w in results["sandbox"]["warnings"]]
    return "\n".join(header + [line([label, *(col[label] for col in columns)]) for label in labels] + notes)
