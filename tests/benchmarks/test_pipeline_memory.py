from dfx.benchmarks.pipeline_memory import build_tree, markdown, peak_rss


def test_tree_of_links_and_a_measured_scan(bad_corpus, tmp_path):
    files = [bad_corpus[k] for k in ("rgb", "rgb_png", "cmyk")]
    tree = build_tree(files, 25, tmp_path / "tree", per_folder=10)
    assert sorted(p.name for p in tree.iterdir()) == ["00000", "00001", "00002"]
    assert sum(1 for _ in tree.rglob("*.*")) == 25
    run = peak_rss(tree, tmp_path / "s.csv", "threads")
    assert run["rows"] == 25 and run["peak_rss_mib"] > 10
    table = markdown({"machine": {"cpu": "x", "cores": 2}, "data": "d",
                      "runs": [run | {"files": 25, "decode": "threads"},
                               run | {"files": 50, "decode": "threads", "peak_rss_mib": run["peak_rss_mib"] * 1.1}]},
                     3)
    assert "| 25 | threads | 25 |" in table and "1.10×" in table
