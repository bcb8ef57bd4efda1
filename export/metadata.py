"""The model description embedded in a .tflite's metadata map.

A TFLite flatbuffer has a `metadata` vector of (name, buffer index) entries;
the converter already puts `min_runtime_version` and `CONVERSION_METADATA`
there. mobilecnn adds one more entry, `mobilecnn`, whose buffer is UTF-8
JSON: labels, input spec, normalization, output kind, mode, version. The
runtime ignores unknown metadata, so the model runs unchanged.
"""
import functools
import json
import os

KEY = "mobilecnn"
FILE_IDENTIFIER = b"TFL3"


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _model_object(tflite):
    schema = _schema()
    if len(tflite) < 8 or not schema.Model.ModelBufferHasIdentifier(tflite, 0):
        raise ValueError("not a TFLite flatbuffer (missing the TFL3 identifier)")
    return schema.ModelT.InitFromObj(schema.Model.GetRootAs(tflite, 0))


def embed(tflite, info, key=KEY):
    """Return `tflite` (bytes) with `info` (JSON-able dict) stored under metadata `key`."""
    import flatbuffers
    import numpy as np

    schema = _schema()
    model = _model_object(tflite)
    payload = np.frombuffer(json.dumps(info, sort_keys=True).encode(), dtype=np.uint8)
    model.metadata = [m for m in (model.metadata or []) if _name(m) != key]
    model.buffers.append(schema.BufferT(data=payload))
    model.metadata.append(schema.MetadataT(name=key, buffer=len(model.buffers) - 1))
    for buffer in model.buffers:
        buffer.__class__ = _aligned_buffer_class()
    builder = flatbuffers.Builder(len(tflite) + len(payload) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


@functools.lru_cache(maxsize=None)
def _aligned_buffer_class():
    """BufferT that keeps weight data 16-byte aligned, as the converter writes it.

    The generated Pack aligns a uint8 vector to 1 byte only, which would leave
    float weights misaligned after a round trip.
    """
    schema = _schema()

    class AlignedBufferT(schema.BufferT):
        def Pack(self, builder):
            data = None
            if self.data is not None:
                payload = bytes(self.data) if isinstance(self.data, list) else self.data.tobytes()
                builder.StartVector(1, len(payload), 16)
                builder.head -= len(payload)
                builder.Bytes[builder.head : builder.head + len(payload)] = payload
                data = builder.EndVector()
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBufferT


def read_metadata(model, key=KEY):
    """The dict embedded under `key` in a .tflite (path or bytes); None when absent."""
    schema = _schema()
    if isinstance(model, (str, os.PathLike)):
        with open(model, "rb") as f:
            model = f.read()
    if len(model) < 8 or not schema.Model.ModelBufferHasIdentifier(model, 0):
        raise ValueError("not a TFLite flatbuffer (missing the TFL3 identifier)")
    root = schema.Model.GetRootAs(model, 0)
    for i in range(root.MetadataLength()):
        entry = root.Metadata(i)
        if _name(entry) == key:
            return json.loads(root.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode())
    return None


def _name(entry):
    name = entry.name if hasattr(entry, "name") else entry.Name()
    return name.decode() if isinstance(name, bytes) else name
