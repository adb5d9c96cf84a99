"""Hand-made run tables for the tests of tables and verdicts (no training)."""
import pandas as pd


def runs_table(values: dict[tuple[str, str], list[float]], wall: dict[str, float] | None = None) -> pd.DataFrame:
    """{(method, column): accuracies over seeds 1, 2, ...} -> the frame report.collect returns."""
    rows = []
    for (method, column), accs in values.items():
        level = column.split("/")[1]
        for seed, acc in enumerate(accs, start=1):
            rows.append({"method": method, "column": column, "paper_column": f"cifar10/{level}",
                         "label": f"FMNIST {level}", "paper_label": f"CIFAR-10, {level}", "seed": seed,
                         "final_accuracy": acc, "wall_time": (wall or {}).get(method, 1.0), "status": "ok",
                         "message": "", "result": None})
    return pd.DataFrame(rows)
