"""Run by ``test_client_wheel`` with the interpreter of a clean venv that holds only the ``launch`` wheel,
scikit-learn and NumPy (so a newer cloudpickle than the server's): a data scientist's session against a
running server. Prints ``ROUND-TRIP OK`` when pickled results come back whole."""

from __future__ import annotations

import sys
import uuid
from typing import Any

import cloudpickle
import numpy

from launch import EndpointRequest, LaunchClient


def rich(x: float = 1.0) -> Any:
    import numpy

    class Local:
        def __init__(self, value: float) -> None:
            self.value = value

    return {"double": lambda v: v * 2, "local": Local(x), "array": numpy.arange(3) * x}


def load_model() -> Any:
    from sklearn.linear_model import LinearRegression

    return LinearRegression().fit([[0.0], [1.0], [2.0]], [1.0, 3.0, 5.0])


def load_predict(model: Any) -> Any:
    def predict(x: float = 1.0) -> Any:
        return {"model": model, "prediction": model.predict([[x]]), "scale": lambda v: v * x}

    return predict


def deploy_and_ask(client: LaunchClient, bundle: Any, x: float) -> Any:
    name = f"wheel-{uuid.uuid4().hex[:8]}"
    endpoint = client.create_model_endpoint(name, bundle, endpoint_type="sync", cpus=1, memory="1Gi")
    try:
        endpoint.wait_until_ready(timeout=480, progress=False)
        response = endpoint.predict(EndpointRequest(args={"x": x}, return_pickled=True))
        assert response.status == "SUCCESS", response.traceback
        return client.download_result(response.result_url)
    finally:
        client.delete_model_endpoint(name)


def main(url: str, key: str, with_sklearn: bool = True) -> None:
    client = LaunchClient(api_key=key, endpoint=url)
    plain = client.create_model_bundle(f"wheel-rich-{uuid.uuid4().hex[:8]}", {}, predict_fn_or_cls=rich,
                                       requirements=[] if with_sklearn else ["numpy"])
    assert plain.cloudpickle_version == cloudpickle.__version__, plain
    assert plain.python_version == f"{sys.version_info[0]}.{sys.version_info[1]}", plain
    value = deploy_and_ask(client, plain, 3.0)
    assert value["double"](4) == 8 and value["local"].value == 3.0
    assert isinstance(value["array"], numpy.ndarray) and value["array"].tolist() == [0.0, 3.0, 6.0]
    if not with_sklearn:
        print(f"ROUND-TRIP OK (client cloudpickle {cloudpickle.__version__}, Python {sys.version.split()[0]})")
        return
    learned = client.create_model_bundle(f"wheel-sk-{uuid.uuid4().hex[:8]}", {}, load_model_fn=load_model,
                                         load_predict_fn=load_predict, requirements=["scikit-learn"])
    value = deploy_and_ask(client, learned, 2.0)
    assert abs(float(value["prediction"][0]) - 5.0) < 1e-6 and value["scale"](2) == 4
    assert abs(float(value["model"].predict([[3.0]])[0]) - 7.0) < 1e-6  # a fitted estimator, usable here
    print(f"ROUND-TRIP OK (client cloudpickle {cloudpickle.__version__})")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], with_sklearn="--no-sklearn" not in sys.argv)
