"""Quick-start: deploy a function as a sync and an async endpoint and print predictions.

Run against a server started with `launch server`; reads LAUNCH_API_KEY (and LAUNCH_ENDPOINT, default
http://127.0.0.1:8000).
"""

import time

from launch import EndpointRequest, LaunchClient


def load_model():
    return {"greeting": "hello"}


def load_predict_fn(model):
    def predict(name: str, excited: bool = False) -> dict:
        text = f"{model['greeting']}, {name}"
        return {"text": text + ("!" if excited else ".")}

    return predict


def wait_ready(endpoint, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (status := endpoint.status()) != "READY":
        if status == "UPDATE_FAILED" or time.monotonic() > deadline:
            raise SystemExit(f"endpoint {endpoint.model_endpoint.name} is {status}")
        time.sleep(0.2)


def main() -> None:
    client = LaunchClient()
    suffix = str(int(time.time()))
    bundle = client.create_model_bundle(
        f"greeter-{suffix}", env_params={}, load_model_fn=load_model, load_predict_fn=load_predict_fn,
        requirements=[],
    )
    sync_ep = client.create_model_endpoint(f"greeter-sync-{suffix}", bundle, cpus=1, memory="1Gi",
                                           endpoint_type="sync", min_workers=1, max_workers=2)
    async_ep = client.create_model_endpoint(f"greeter-async-{suffix}", bundle, cpus=1, memory="1Gi",
                                            endpoint_type="async", min_workers=1, max_workers=2)
    wait_ready(sync_ep)
    wait_ready(async_ep)

    response = sync_ep.predict(EndpointRequest(args={"name": "Ada"}, return_pickled=False))
    print("sync:", response.status, response.result)

    future = async_ep.predict(EndpointRequest(args={"name": "Grace", "excited": True}, return_pickled=False))
    response = future.get(timeout=60)
    print("async:", response.status, response.result)

    response = sync_ep.predict(EndpointRequest(args={"name": "Alan"}, return_pickled=True))
    print("pickled:", client.download_result(response.result_url))


if __name__ == "__main__":
    main()
