"""Task modules: one Prefect task per unit of stage work. Tasks that compute on the GPU carry the tag
`gpu` (flows.common.GPU_TAG): on CUDA the flows set Prefect's tag concurrency limit `gpu` to the number of
visible GPUs (flows.common.ensure_gpu_limit), so no more of them run at once than there are GPUs."""
