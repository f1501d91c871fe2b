CREATE TABLE "upload_rejections" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"code" text NOT NULL,
	"size_bytes" bigint
);
--> statement-breakpoint
ALTER TABLE "segments" ADD COLUMN "latency_ms" integer;--> statement-breakpoint
ALTER TABLE "segments" ADD COLUMN "word_count" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "encounter_type" text;--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "stt_model" text;--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "stt_audio_ms" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "stt_calls" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "hallucinations_dropped" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
CREATE INDEX "upload_rejections_at_idx" ON "upload_rejections" USING btree ("at");--> statement-breakpoint
CREATE INDEX "sessions_created_idx" ON "sessions" USING btree ("created_at");