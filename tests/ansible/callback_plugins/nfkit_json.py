# A minimal stdout callback for tests/ansible.rs: one JSON document at the
# end of the run, {"plays": [{"tasks": [{"task": {"name"}, "hosts": {HOST:
# RESULT}}]}], "stats": {HOST: {"ok", "changed", "failures", ...}}}.
# (ansible-core ships no JSON callback; ansible.posix's would need Galaxy.)
import json

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: nfkit_json
    type: stdout
    short_description: the run as one JSON document (nfkit's tests)
    description: Collects each task's result per host and the stats.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "nfkit_json"

    def __init__(self, display=None):
        super().__init__(display)
        self.plays = []

    def v2_playbook_on_play_start(self, play):
        self.plays.append({"play": {"name": play.get_name()}, "tasks": []})

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.plays[-1]["tasks"].append({"task": {"name": task.get_name()}, "hosts": {}})

    def _record(self, result, **extra):
        entry = dict(result._result)
        entry.update(extra)
        self.plays[-1]["tasks"][-1]["hosts"][result._host.get_name()] = entry

    def v2_runner_on_ok(self, result, **kwargs):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False, **kwargs):
        self._record(result, failed=True)

    def v2_runner_on_unreachable(self, result, **kwargs):
        self._record(result, unreachable=True)

    def v2_runner_on_skipped(self, result, **kwargs):
        self._record(result, skipped=True)

    def v2_playbook_on_stats(self, stats):
        summary = {h: stats.summarize(h) for h in sorted(stats.processed.keys())}
        self._display.display(json.dumps({"plays": self.plays, "stats": summary}, default=str))
