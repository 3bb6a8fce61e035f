# The build stage of the local images' Dockerfiles (their BUILD_IMAGE): the
# local Python base plus wheels fetched on the host, with pip set to install
# from them only. Builds need no network and no CA of the build machine; the
# shipped images start FROM the bare base, so the wheels stay here.
ARG BASE
FROM ${BASE}
COPY . /wheels
ENV PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
