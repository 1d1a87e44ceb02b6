"""One module per API shape, each a few top-level handlers over :meth:`RerankService.rank
<rerank_plugins.serve.service.RerankService.rank>`: ``cohere_v1`` (Cohere v1 and Jina), ``cohere_v2``, ``tei``
(text-embeddings-inference), ``vllm_score`` (vLLM's score API); ``info`` answers the models, health and metrics.
``rerank_plugins.serve.app`` holds the one route table. A handler only translates: the body into a
:class:`~rerank_plugins.core.Request`, the :class:`~rerank_plugins.core.Ranking` (already best first) into the
API's answer.
"""
