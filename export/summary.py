"""The human-readable export summary printed on the terminal."""


def _mb(n):
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def format_summary(result):
    m = result.manifest
    meta = m["metadata"]
    lines = [
        f"exported {m['model']['name']} -> {result.path} ({m['mode']}, io {m['io']}"
        f"{', sparse' if m['sparse'] else ''}, batch {m['batch_size']}, {_mb(m['sizes']['tflite_bytes'])})",
        f"  manifest     {result.manifest_path}",
        f"  sha256       {m['sha256']}",
        f"  source       {_source(m)}",
        f"  input        {meta['input']['dtype']} {meta['input']['shape']}, "
        f"normalization {meta['normalization']['source'] if meta['normalization'] else 'unknown'}",
        f"  output       {meta['output']['dtype']} {meta['output']['shape']} {meta['output']['kind']}"
        + (f" ({meta['output']['dropped_activation']} dropped; apply it outside the model)"
           if meta["output"]["dropped_activation"] else ""),
    ]
    if m["calibration"]:
        lines.append(f"  calibration  {m['calibration']}")
    for note in m["notes"]:
        lines.append(f"  note         {note}")
    v = m["verification"]
    if v.get("skipped"):
        lines.append("  verification SKIPPED (--no-verify)")
        return "\n".join(lines)
    p = v["parity"]
    limits = ", ".join(f"{k} {lim:g}" for k, lim in p["limits"].items())
    lines.append(
        f"  parity       max abs {p['max_abs_error']:.3g}, rel {p['rel_error']:.3g}, rel L2 {p['rel_l2']:.3g}, "
        f"top-1 agreement {p['top1_agreement']:.0%} on {p['samples']} samples (limits, {p['table']}: {limits})"
    )
    n_ops = sum(v["op_counts"].values())
    top = ", ".join(f"{k} x{n}" for k, n in sorted(v["op_counts"].items(), key=lambda kv: -kv[1])[:6])
    lines.append(f"  ops          {n_ops} ops, {len(v['float_ops'])} float compute op(s) flagged; {top}")
    d = v["delegation"]
    lines.append(
        f"  delegation   {d['partitions']} XNNPACK partition(s), fully accelerated: {d['fully_accelerated']} ({d['runtime']})"
    )
    for note in v.get("notes", []):
        lines.append(f"  note         {note}")
    s = v["sparsity"]
    lines.append(
        f"  sparsity     {s['zero_fraction']:.1%} zeros in {s['weights']} conv/FC weights, "
        f"{s['sparse_tensors']} sparse tensor(s)"
    )
    a = v["accuracy"]
    if a:
        lines.append(
            f"  accuracy     {a['images']} images: Keras top-1 {a['keras_top1']:.2%} top-5 {a['keras_top5']:.2%}; "
            f"TFLite top-1 {a['tflite_top1']:.2%} top-5 {a['tflite_top5']:.2%}"
        )
    return "\n".join(lines)


def _source(m):
    src = m["source"]
    if src["kind"] == "registry":
        return f"registry name {src['name']} (random initial weights)"
    if src["kind"] == "weights":
        return f"weights {src['path']} into {src['name']}"
    if src["kind"] == "file":
        return f"{src['path']}"
    return f"in-memory Keras model {src.get('name')}"
