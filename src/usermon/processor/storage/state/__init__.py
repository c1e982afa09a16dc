"""The engine's windowed state: the :class:`~usermon.processor.storage.state.base.State`
protocol (``base``) and its two backends, in this process's memory (``memory``) and in Redis
shared by replicas (``redis``). A store (:mod:`usermon.processor.storage.base`) holds one."""
