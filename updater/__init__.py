"""The hub's updater: its own process and systemd unit (``kotihub-updater.service`` + timer), never the daemon.

It asks the register which release this hub should run, fetches the bundle through TUF (every byte verified against
metadata signed by keys the trusted root names), installs it next to the running release, switches a symlink,
restarts the daemon and keeps the release only if the hub is healthy within a window; otherwise it switches back.
See docs/updates.md.
"""
