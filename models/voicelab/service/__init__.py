"""The studio as a service: many technicians, many workers, one queue.

`app` is the web API and page a technician uses (upload, progress, download, push);
`worker` is the Celery task that clones through `voicelab.studio.clone_voice`, the same
function `voicelab clone` calls; `jobs` keeps each request's state in Redis so a job is
never finished twice and resumes on another worker when its worker dies; `uploads`
refuses bad recordings and missing consent before anything is queued. docs/fleet.md
has the picture.
"""
