"""The robustness table of cv_report.md (pipeline/robustness.py)."""
from tiled_vessel_seg.pipeline import robustness


def test_report_section_has_one_column_per_perturbation_with_mean_and_std():
    summary = {name: (0.5 + i / 100, i / 1000) for i, name in
               enumerate(robustness.PERTURBATIONS)}
    lines = robustness.report_section(summary)
    assert lines[0] == "## Robustness: held-out photos changed" and lines[-1] == ""
    header, rule, values = lines[-4:-1]
    assert header.strip("| ").split(" | ") == list(robustness.PERTURBATIONS)
    assert rule == "|" + "---|" * len(robustness.PERTURBATIONS)
    cells = values.strip("| ").split(" | ")
    assert cells == [f"{0.5 + i / 100:.3f} +- {i / 1000:.3f}"
                     for i in range(len(robustness.PERTURBATIONS))]
    assert robustness.ROBUSTNESS_CSV in lines[2]
