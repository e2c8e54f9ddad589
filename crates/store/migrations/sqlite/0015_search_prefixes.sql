-- The inbox's search takes its last word as a prefix (`hel` finds "hello"). FTS5 answers a
-- prefix from the main index by merging the doclists of every term that starts with it, in full,
-- before `ORDER BY rowid DESC LIMIT` can stop: `hel` over a million messages that say "hello"
-- merged a million entries (~50 ms a search). Prefix indexes of 1, 2 and 3 characters answer
-- those prefixes from one doclist, read newest first and only as far as the limit. Longer
-- prefixes match fewer terms; a long prefix of a word that is in most messages still merges
-- its doclist.
--
-- FTS5 has no ALTER for `prefix`: both tables are made again from what they index (the
-- triggers of 0012 name them and keep them, unchanged). Still ordinary tables with their own
-- copy of the text: `prefix` is as old as FTS5, so Debian 12's sqlite3 (3.40) opens the file.
DROP TABLE message_search;
CREATE VIRTUAL TABLE message_search USING fts5 (
    text,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '1 2 3'
);
INSERT INTO message_search (rowid, text)
SELECT pk, json_extract(payload, '$.message') FROM messages
 WHERE json_extract(payload, '$.message') <> '';

DROP TABLE participant_search;
CREATE VIRTUAL TABLE participant_search USING fts5 (
    who,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '1 2 3'
);
INSERT INTO participant_search (rowid, who)
SELECT rowid, coalesce(name, '') || ' ' || participant_id FROM participants;
