"""The lab's robot client, as a test double of its HTTP side (written after minuum/MoNaVLA
`ROS_action/src/mobile_vla_package/mobile_vla_package/api_client_node.py`): the same encoding,
headers, body, timeout and reply handling; the camera service and ROS publishing are left out.

Per inference tick the original: resizes the BGR camera frame to 224x224 with cv2.resize, encodes
it with cv2.imencode('.jpg', ...), base64 (utf-8 text), sends X-API-Key only when it has a key,
POSTs {"image", "instruction", "vlm_model"} to /predict with `requests`, and on 200 reads
data["action"][0:2] and data["latency_ms"]; any other status or exception only counts a failure.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import cv2
import numpy as np
import requests


@dataclass
class RobotClient:
    """The client's state: server, key, instruction, counters, last command (linear_x, linear_y)."""

    api_server_url: str
    api_key: str = ""
    default_instruction: str = "center_straight"
    vlm_model: str = "kosmos"
    timeout: float = 1.0
    success_count: int = 0
    fail_count: int = 0
    latency_history: list[float] = field(default_factory=list)
    last_action: tuple[float, float] | None = None
    last_reply: dict | None = None
    last_status: int | None = None

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        return headers

    def inference_tick(self, bgr_frame: np.ndarray) -> bool:
        """inference_loop's body: resize, then run_inference; True when a command was 'published'."""
        resized = cv2.resize(bgr_frame, (224, 224))
        return self.run_inference(resized)

    def run_inference(self, image: np.ndarray) -> bool:
        try:
            _, buffer = cv2.imencode(".jpg", image)
            img_b64 = base64.b64encode(buffer).decode("utf-8")
            response = requests.post(f"{self.api_server_url}/predict",
                                     json={"image": img_b64, "instruction": self.default_instruction,
                                           "vlm_model": self.vlm_model},
                                     headers=self.headers(), timeout=self.timeout)
            self.last_status = response.status_code
            if response.status_code == 200:
                data = response.json()
                self.last_reply = data
                action_list = data["action"]
                latency = data["latency_ms"]
                self.success_count += 1
                self.latency_history.append(latency)
                self.last_action = (float(action_list[0]), float(action_list[1]))
                return True
            self.fail_count += 1
        except Exception:  # noqa: BLE001 - the original counts any failure and carries on
            self.fail_count += 1
        return False

    def model_loaded(self) -> bool:
        """run_system_test's API check: GET /health (no key), 2.0 s timeout, reads model_loaded."""
        r = requests.get(f"{self.api_server_url}/health", timeout=2.0)
        return r.status_code == 200 and bool(r.json().get("model_loaded", False))

    def reset(self) -> int:
        """POST /reset without a body (the original server's history reset), with the key header."""
        return requests.post(f"{self.api_server_url}/reset", headers=self.headers(), timeout=self.timeout).status_code
