# One image for the hub and the agent (docs/container.md).
#   docker build -t host-dashboard .                      # on python:3.11-slim
#   docker build --build-arg BASE=IMAGE -t host-dashboard .  # any Debian-like image
#                                                         # with Python >= 3.11 and venv
# The hub:   docker run ... host-dashboard
# An agent:  docker run ... host-dashboard agent
# Each instruction's layer is a copy under some storage drivers (vfs): few layers.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
COPY pyproject.toml README.md /src/
COPY server /src/server
# The project and its dependencies from the package index, in a venv that the next
# stage copies whole; and the project's wheel, which the hub serves to the one-line
# install (/agent/install.sh) at its own version.
RUN python3 -m venv /opt/dashboard \
 && /opt/dashboard/bin/pip install --no-cache-dir --disable-pip-version-check /src \
 && /opt/dashboard/bin/pip wheel --no-cache-dir --disable-pip-version-check --no-deps \
      --wheel-dir /opt/dashboard/agent /src

FROM ${BASE}
COPY --from=build /opt/dashboard /opt/dashboard
# A fixed uid: the agent's token file on the host is made readable by it (0600, owner 10001).
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/dashboard --create-home \
      --shell /usr/sbin/nologin dashboard
ENV DASHBOARD_DATA_DIR=/var/lib/dashboard \
    DASHBOARD_LOG_DIR=/var/lib/dashboard/logs \
    DASHBOARD_AGENT_WHEEL_DIR=/opt/dashboard/agent \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER dashboard
WORKDIR /var/lib/dashboard
VOLUME /var/lib/dashboard
EXPOSE 5000
ENTRYPOINT ["/opt/dashboard/bin/python", "-m", "server"]
