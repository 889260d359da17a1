"""Bundles: the three callable forms, a zip from directories, globals_copy, list/get/clone/delete; each form
is served by a sync endpoint to prove the server runs what the client packed."""

from __future__ import annotations

import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from _common import NO_REQUIREMENTS, SMALL, api_error, client, emit, name, wait_gone, wait_status

from launch import EndpointRequest

ENV = {"framework_type": "pytorch", "pytorch_image_tag": "1.10.0-cuda11.3-cudnn8-runtime"}


def predict_fn(x: int, y: int = 1) -> dict[str, int]:
    return {"sum": x + y}


class Scaler:
    """A callable instance: the client pickles the instance, the metadata holds the class source."""

    def __init__(self, factor: int) -> None:
        self.factor = factor

    def __call__(self, x: int) -> dict[str, int]:
        return {"scaled": x * self.factor}


def load_predict_fn(model: dict[str, str]) -> Any:
    def predict(x: int) -> dict[str, Any]:
        return {"model": model["name"], "x": x}

    return predict


def load_model_fn() -> dict[str, str]:
    return {"name": "loaded"}


def write_package(root: Path) -> tuple[Path, Path, Path]:
    """A package for create_model_bundle_from_dirs, a requirements file with a comment, and a helper module
    that only exists here (shipped by value through ``globals_copy``)."""
    pkg = root / "legacy_pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "data.txt").write_text("from a data file")
    (pkg / "mod.py").write_text(textwrap.dedent("""
        from pathlib import Path

        def load_model(app_config):
            data = (Path(__file__).parent / "sub" / "data.txt").read_text()
            return {"greeting": app_config["greeting"], "data": data}

        def load_predict(model):
            def predict(who):
                return f"{model['greeting']} {who} ({model['data']})"
            return predict
    """))
    requirements = root / "requirements.txt"
    requirements.write_text("# nothing to install\n\n")
    helper = root / "legacy_helper_mod.py"
    helper.write_text("def triple(x):\n    return 3 * x\n")
    return pkg, requirements, helper


def serve(c: Any, bundle: str, request: EndpointRequest) -> dict[str, Any]:
    endpoint = c.create_model_endpoint(name(f"ep-{bundle}"), bundle, **SMALL)
    status = wait_status(endpoint)
    response = endpoint.predict(request)
    c.delete_model_endpoint(endpoint.model_endpoint.name)
    wait_gone(c, endpoint.model_endpoint.name)
    return {"status": status, "state": response.status, "result": response.result, "traceback": response.traceback}


def main() -> dict[str, Any]:
    c = client()
    b_fn, b_cls, b_model, b_load, b_zip, b_glob = (name(s) for s in ("fn", "cls", "model", "load", "zip", "glob"))
    c.create_model_bundle(b_fn, ENV, predict_fn_or_cls=predict_fn, requirements=NO_REQUIREMENTS,
                          app_config={"k": 1})
    c.create_model_bundle(b_cls, ENV, predict_fn_or_cls=Scaler(10), requirements=NO_REQUIREMENTS)
    c.create_model_bundle(b_model, ENV, load_predict_fn=load_predict_fn, model={"name": "given"},
                          requirements=NO_REQUIREMENTS)
    c.create_model_bundle(b_load, ENV, load_predict_fn=load_predict_fn, load_model_fn=load_model_fn,
                          requirements=NO_REQUIREMENTS)
    with tempfile.TemporaryDirectory() as tmp:
        pkg, requirements, _ = write_package(Path(tmp))
        sys.path.insert(0, tmp)
        import legacy_helper_mod  # exists only in this temporary directory, never on the server

        def uses_helper(x: int) -> int:
            return legacy_helper_mod.triple(x)

        c.create_model_bundle(b_glob, ENV, predict_fn_or_cls=uses_helper, requirements=NO_REQUIREMENTS,
                              globals_copy={"legacy_helper_mod": legacy_helper_mod})
        c.create_model_bundle_from_dirs(b_zip, [str(pkg)], str(requirements), ENV, "legacy_pkg.mod.load_predict",
                                        "legacy_pkg.mod.load_model", app_config={"greeting": "hello"})

    listed = {b.name: b for b in c.list_model_bundles()}
    got = {n: c.get_model_bundle(n) for n in (b_fn, b_cls, b_model, b_load, b_zip)}
    clone = c.clone_model_bundle_with_changes(b_fn, name("fn-clone"), app_config={"k": 2})
    clone_plain = c.clone_model_bundle_with_changes(got[b_fn], name("fn-clone2"))
    raw_clone = c.connection.get(f"model_bundle/{clone.name}")["bundles"][0]
    raw_clone_plain = c.connection.get(f"model_bundle/{clone_plain.name}")["bundles"][0]
    served = {
        "fn": serve(c, b_fn, EndpointRequest(args={"x": 2}, return_pickled=False)),
        "cls": serve(c, b_cls, EndpointRequest(args={"x": 4}, return_pickled=False)),
        "model": serve(c, b_model, EndpointRequest(args={"x": 5}, return_pickled=False)),
        "load": serve(c, b_load, EndpointRequest(args={"x": 6}, return_pickled=False)),
        "glob": serve(c, b_glob, EndpointRequest(args={"x": 7}, return_pickled=False)),
        "zip": serve(c, b_zip, EndpointRequest(args={"who": "legacy"}, return_pickled=False)),
    }
    return {
        "names": {"fn": b_fn, "cls": b_cls, "model": b_model, "load": b_load, "zip": b_zip, "glob": b_glob},
        "listed": sorted(listed),
        "bundles": {n: {"name": b.name, "bundle_id": b.bundle_id, "packaging_type": b.packaging_type,
                        "location": b.location, "env_params": b.env_params, "requirements": b.requirements,
                        "metadata": b.metadata} for n, b in got.items()},
        "clone": {"name": clone.name, "app_config": raw_clone["app_config"], "location": clone.location},
        "clone_plain": {"name": clone_plain.name, "app_config": raw_clone_plain["app_config"]},
        "duplicate": api_error(c.create_model_bundle, b_fn, ENV, predict_fn_or_cls=predict_fn,
                               requirements=NO_REQUIREMENTS),
        "duplicate_clone": api_error(c.clone_model_bundle_with_changes, b_fn, b_cls),
        "served": served,
        "deleted": [c.delete_model_bundle(n) for n in (b_zip, clone.name, clone_plain.name)],
        "get_deleted": api_error(c.get_model_bundle, b_zip),
        "delete_again": api_error(c.delete_model_bundle, b_zip),
    }


if __name__ == "__main__":
    emit(main())
