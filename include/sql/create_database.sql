-- The database every table of the project lives in.
CREATE DATABASE IF NOT EXISTS {{ params.database }}
