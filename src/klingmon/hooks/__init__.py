"""Hooks and notifications: what runs, or is sent, when a task's story moves."""

from klingmon.hooks._hooks import Hook, HookEvent, HookName, Hooks
from klingmon.hooks._notify import (
    apprise_hook,
    check_env_names,
    command_hook,
    event_json,
    hook_environment,
    install_hooks,
    webhook_hook,
)

__all__ = [
    "Hook",
    "HookEvent",
    "HookName",
    "Hooks",
    "apprise_hook",
    "check_env_names",
    "command_hook",
    "event_json",
    "hook_environment",
    "install_hooks",
    "webhook_hook",
]
