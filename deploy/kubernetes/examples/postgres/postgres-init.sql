-- One database per service (each service owns its data; ARCHITECTURE.md, Storage), C collation so
-- ids and page tokens compare byte by byte. Run once, by the postgres image, on an empty volume.
CREATE DATABASE chatmesh_conversation LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
CREATE DATABASE chatmesh_order LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
CREATE DATABASE chatmesh_loyalty LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
CREATE DATABASE chatmesh_messaging LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
