"""TF Serving's Predict API, emulated on a loaded SavedModel, for testing client requests without a server.

No model server runs in the tests; these functions take what a client sends, decode it the way
TF Serving does, run the SavedModel's own signature, and encode the answer the way TF Serving
does, so a recipe's request bodies and reply parsing are exercised end to end:

* REST (``POST /v1/models/<name>:predict``, tensorflow.org/tfx/serving/api_rest): the row format
  ``{"signature_name": ..., "instances": [...]}`` (``serving_default`` when no name) and the columnar
  ``{"inputs": ...}``; with one input an instance is the value itself, else an object of named
  inputs; ``{"b64": "..."}`` is base64 for a ``DT_STRING`` input; JSON numbers are cast to the
  input's dtype, and refused where they do not fit it (a fraction or out-of-range value for uint8).
  The reply is ``{"predictions": [...]}`` (one value per instance with one output, else objects),
  a ``DT_STRING`` output whose name ends in ``_bytes`` as ``{"b64": "..."}``.
* gRPC: ``PredictRequest.inputs`` are ``TensorProto``\\ s (``tf.make_ndarray``), their dtype must be
  the signature's, and the reply's ``outputs`` are ``tf.make_tensor_proto`` of each output.
"""

from __future__ import annotations

import base64
import json

import numpy as np


class ServingError(ValueError):
    """What TF Serving answers with HTTP 400 / INVALID_ARGUMENT."""


def _signature(loaded, name: str | None):
    name = name or "serving_default"
    if name not in loaded.signatures:
        raise ServingError(f"Serving signature name: \"{name}\" not found in signature def")
    fn = loaded.signatures[name]
    return fn, fn.structured_input_signature[1]


def _json_value(value, spec):
    """One JSON value as the input's dtype: bytes (nested lists of them) for DT_STRING, else an array."""
    import tensorflow as tf

    if spec.dtype == tf.string:
        def one(v):
            if isinstance(v, dict):
                if set(v) != {"b64"}:
                    raise ServingError(f"a binary value must be {{\"b64\": ...}}, got keys {sorted(v)}")
                return base64.b64decode(v["b64"], validate=True)
            if isinstance(v, str):
                return v.encode()
            if isinstance(v, list):
                return [one(x) for x in v]
            raise ServingError(f"expected a string or {{\"b64\": ...}} for {spec.name}, got {type(v).__name__}")
        return one(value)
    array = np.asarray(value)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ServingError(f"{spec.name}: expected numbers of one nested shape")
    dtype = spec.dtype.as_numpy_dtype
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if not np.issubdtype(array.dtype, np.integer) or array.min(initial=0) < info.min \
                or array.max(initial=0) > info.max:
            raise ServingError(f"{spec.name}: JSON values do not fit {spec.dtype.name}")
    return array.astype(dtype)


def rest_predict(loaded, body: bytes | str | dict) -> dict:
    """The JSON reply TF Serving gives to a REST predict ``body`` (raises :class:`ServingError`)."""
    import tensorflow as tf

    request = json.loads(body) if isinstance(body, (bytes, str)) else body
    fn, specs = _signature(loaded, request.get("signature_name"))
    if ("instances" in request) == ("inputs" in request):
        raise ServingError("the body must hold exactly one of 'instances' (row) or 'inputs' (columnar)")
    if "instances" in request:
        instances = request["instances"]
        if len(specs) == 1:
            (key,) = specs
            values = {key: [_json_value(v, specs[key]) for v in instances]}
        else:
            values = {k: [_json_value(inst[k], specs[k]) for inst in instances] for k in specs}
        tensors = {k: tf.constant(v if specs[k].dtype == tf.string else np.stack(v), dtype=specs[k].dtype)
                   for k, v in values.items()}
    else:
        inputs = request["inputs"]
        inputs = inputs if isinstance(inputs, dict) else {next(iter(specs)): inputs}
        tensors = {k: tf.constant(_json_value(inputs[k], specs[k]), dtype=specs[k].dtype) for k in specs}
    outputs = {k: v.numpy() for k, v in fn(**tensors).items()}

    def encode(name, value):
        if isinstance(value, bytes):
            return {"b64": base64.b64encode(value).decode()} if name.endswith("_bytes") else value.decode()
        return value.tolist()

    n = len(next(iter(outputs.values())))
    if "instances" in request:
        if len(outputs) == 1:
            ((name, value),) = outputs.items()
            return {"predictions": [encode(name, value[i]) for i in range(n)]}
        return {"predictions": [{k: encode(k, v[i]) for k, v in outputs.items()} for i in range(n)]}
    return {"outputs": {k: [encode(k, x) for x in v] for k, v in outputs.items()}}


def grpc_predict(loaded, request):
    """The ``PredictResponse`` TF Serving gives to a gRPC ``PredictRequest`` (raises :class:`ServingError`)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    fn, specs = _signature(loaded, request.model_spec.signature_name or None)
    if set(request.inputs) != set(specs):
        raise ServingError(f"inputs {sorted(request.inputs)} do not match the signature's {sorted(specs)}")
    tensors = {}
    for k, proto in request.inputs.items():
        got = tf.dtypes.as_dtype(proto.dtype)
        if got != specs[k].dtype:
            raise ServingError(f"Expects arg {k} to be {specs[k].dtype.name} but {got.name} is provided")
        tensors[k] = tf.constant(tf.make_ndarray(proto), dtype=got)
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for k, v in fn(**tensors).items():
        response.outputs[k].CopyFrom(tf.make_tensor_proto(v.numpy()))
    return response
