BEGIN;
SET LOCAL work_mem = '8MB';
SHOW work_mem;
SELECT 1;
COMMIT;
